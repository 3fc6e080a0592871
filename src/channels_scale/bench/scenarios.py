"""The scenarios of BENCHMARKS.md, run against one stack after the other.

=========  ========================================================================================
fanout    S subscribers in one room (one of them publishes M frames at R/s): deliveries/s, latency
          from the scheduled send time, lost/duplicated/reordered, costs
rooms     C clients in rooms of K, every client publishing at R/s for D s: same figures, per-room
          ordering (reordering is counted per publisher, so per room)
idle      ramp to C idle connections in steps, then hold them D s: connections held, connect rate,
          handshake errors, RSS per idle connection per worker
churn     fanout (S subscribers, R/s for D s) while extra clients connect and disconnect at a
          fixed rate: latency of the steady clients, churn errors
saturate  fanout with R doubled per step of D s until p99 exceeds the bound or frames are lost,
          then bisected twice: the highest rate held under the bound is the headline number
clientlib fanout against the ceiling once per client library: load-generator CPU per 1,000
          deliveries, to choose the cheapest client
=========  ========================================================================================
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from channels_scale.bench import clientlib
from channels_scale.bench.costs import CostMeter, worker_rss
from channels_scale.bench.endpoint import Endpoint
from channels_scale.bench.figures import (
    PhaseFigures,
    ServerCosts,
    delivery_figures,
    latency_summary,
    merge_histograms,
    redis_node_figures,
    saturation_point,
)
from channels_scale.bench.frames import merge_counts
from channels_scale.bench.live import Ui
from channels_scale.bench.loadgen import (
    ChurnSpec,
    ConnSpec,
    LoadGenerator,
    PhaseReport,
    PhaseSpec,
    now_us,
    source_address,
)
from channels_scale.bench.stacks import Target, open_target
from channels_scale.exceptions import ChannelsScaleError, ConfigError

SCENARIOS = ("fanout", "rooms", "idle", "churn", "saturate", "clientlib")

DEFAULTS: dict[str, dict[str, float]] = {
    "fanout": {"subs": 200, "rate": 50, "msgs": 1000},
    "rooms": {"clients": 200, "room_size": 10, "rate": 2, "duration": 10},
    "idle": {"clients": 2000, "duration": 10},
    "churn": {"subs": 100, "rate": 20, "duration": 20},
    "saturate": {"subs": 200, "rate": 2, "duration": 5},
    "clientlib": {"subs": 100, "rate": 100, "msgs": 1000},
}
"""Per-scenario defaults (frames/s per publisher, seconds); each finishes in about a minute."""

SATURATE_FACTOR = 2.0
SATURATE_MAX_STEPS = 12
SATURATE_REFINE = 2
IDLE_STEPS = 4
CHURN_RATE = 10.0
CHURN_HOLD_S = 1.0


class BenchError(ChannelsScaleError):
    """A stack could not be measured (it did not start, or no client could connect)."""


@dataclass
class BenchConfig:
    """The options of one ``channels-scale bench`` run (``None``: the scenario's default)."""

    scenario: str
    stacks: list[str] = field(default_factory=lambda: ["ceiling"])
    url: str | None = None
    workers: int = 2
    #: ``--lb`` of the Django stacks (None: ``channels-scale up``'s default)
    lb: str | None = None
    subs: int | None = None
    msgs: int | None = None
    rate: float | None = None
    duration: float | None = None
    clients: int | None = None
    room_size: int | None = None
    bound_ms: float = 100.0
    procs: int = 2
    client_lib: str = clientlib.DEFAULT_LIBRARY
    drain_s: float = 10.0
    out: Path = Path("bench-results")
    endpoint: Endpoint = field(default_factory=Endpoint)
    #: ``--redis-topology``: run the ours stack once on each (``single``, ``shards:K``,
    #: ``cluster:N``: stack/topology.py), figures per Redis node; None: the stacks as usual
    redis_topologies: list[str] | None = None

    def get(self, name: str) -> float:
        """The option ``name``: given on the command line, else the scenario default."""
        value = getattr(self, name)
        if value is not None:
            return float(value)
        return DEFAULTS[self.scenario].get(name, 0.0)

    def resolved(self) -> dict[str, Any]:
        """Every option with defaults filled in, for the JSON record."""
        keys = ("subs", "msgs", "rate", "duration", "clients", "room_size")
        data: dict[str, Any] = {k: self.get(k) for k in keys if k in DEFAULTS[self.scenario]}
        stacks = ["ceiling"] if self.scenario == "clientlib" else self.stacks
        data.update(
            stacks=stacks if self.url is None else ["url"],
            url=self.url,
            workers=self.workers,
            lb=self.lb,
            bound_ms=self.bound_ms,
            procs=self.procs,
            client_lib=self.client_lib,
            drain_s=self.drain_s,
            path=self.endpoint.path,
            frame=self.endpoint.frame,
            headers=self.endpoint.redacted_headers(),
        )
        if self.redis_topologies:
            data.update(stacks=["ours"], redis_topologies=self.redis_topologies)
        return data


class Run:
    """One stack under load: its target, load generator, cost meter and progress display."""

    def __init__(
        self, cfg: BenchConfig, target: Target, lg: LoadGenerator, meter: CostMeter, ui: Ui
    ) -> None:
        self.cfg = cfg
        self.target = target
        self.lg = lg
        self.meter = meter
        self.ui = ui
        self.token = secrets.token_hex(3)
        self.phase_no = 0

    def room(self, label: str) -> str:
        return f"bench-{label}-{self.token}"

    def connect(self, specs: list[ConnSpec]) -> dict[str, Any]:
        """Open ``specs``; raise :class:`BenchError` when none opens."""
        report = self.lg.connect(specs)
        if report.opened == 0 and specs:
            raise BenchError(f"no client could connect: {'; '.join(report.errors[:2])}")
        time.sleep(0.5)  # group joins finish after the handshake on some stacks
        return {
            "asked": len(specs),
            "opened": report.opened,
            "failed": report.failed,
            "seconds": report.seconds,
            "per_s": report.opened / report.seconds if report.seconds > 0 else None,
            "errors": report.errors,
        }

    def phase(
        self,
        label: str,
        publishers: dict[int, str],
        rate: float,
        msgs: int,
        audience: dict[str, int],
        *,
        drain_s: float | None = None,
        churn: ChurnSpec | None = None,
    ) -> tuple[PhaseFigures, list[PhaseReport]]:
        """Run one measured phase; ``audience`` is the connections per room (for the offer)."""
        self.phase_no += 1
        spec = PhaseSpec(
            phase=self.phase_no,
            publishers=publishers,
            rate=rate,
            msgs=msgs,
            start_at_us=now_us() + 500_000,
            drain_s=self.cfg.drain_s if drain_s is None else drain_s,
            churn=churn,
        )
        offered_deliveries = sum(rate * audience.get(room, 0) for room in publishers.values())
        total = sum(msgs * audience.get(room, 0) for room in publishers.values())
        update = self.ui.phase(f"{self.target.name} {label}", total)
        self.meter.start()
        try:
            reports = self.lg.run_phase(spec, update)
        finally:
            self.ui.done()
        costs = self.meter.stop()
        return figures_of(reports, spec, offered_deliveries, costs), reports


def figures_of(
    reports: list[PhaseReport], spec: PhaseSpec, offered_deliveries: float, costs: ServerCosts
) -> PhaseFigures:
    """Merge the client processes' reports of a phase into its figures."""
    firsts = [r.first_scheduled_us for r in reports if r.first_scheduled_us is not None]
    lasts = [r.last_receipt_us for r in reports if r.last_receipt_us is not None]
    return delivery_figures(
        counts=merge_counts(r.counts for r in reports),
        latency=latency_summary(merge_histograms(r.histogram for r in reports)),
        offered_frames_per_s=spec.rate * len(spec.publishers),
        offered_deliveries_per_s=offered_deliveries,
        scheduled_s=spec.nominal_s,
        first_scheduled_us=min(firsts) if firsts else None,
        last_receipt_us=max(lasts) if lasts else None,
        max_send_lag_us=max((r.max_send_lag_us for r in reports), default=0),
        clients=[r.cpu for r in reports],
        connection_errors=sum(r.closed_during for r in reports),
        errors=[e for r in reports for e in r.errors],
        costs=costs,
    )


def _one_room(run: Run, label: str, subs: int) -> tuple[str, dict[str, Any]]:
    room = run.room(label)
    specs = [ConnSpec(i, room, source_address(i, subs)) for i in range(subs)]
    return room, run.connect(specs)


def _step(rate: float, figures: PhaseFigures, label: str) -> dict[str, Any]:
    step = {"label": label, "rate": rate, "figures": figures.to_json()}
    nodes = redis_node_figures(figures)
    if nodes:  # `--redis-topology`: CPU and commands per Redis node
        step["redis_nodes"] = nodes
    return step


def _summary(ui: Ui, name: str, f: PhaseFigures) -> None:
    ui.note(
        f"  {name}: {f.deliveries_per_s:,.0f} deliveries/s, p50 {f.latency.at(50):.1f} ms, "
        f"p99 {f.latency.at(99):.1f} ms, lost {f.lost}, dup {f.duplicated}, "
        f"reordered {f.reordered}, client cpu max "
        f"{max((c.utilization for c in f.clients), default=0):.0%}"
    )


def fanout(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    subs, rate, msgs = int(cfg.get("subs")), cfg.get("rate"), int(cfg.get("msgs"))
    room, connect = _one_room(run, "fanout", subs)
    figures, _ = run.phase("fanout", {0: room}, rate, msgs, {room: connect["opened"]})
    _summary(run.ui, run.target.name, figures)
    return {"connect": connect, "phases": [_step(rate, figures, "fanout")]}


def clientlib_run(run: Run) -> dict[str, Any]:
    result = fanout(run)
    result["client_lib"] = run.lg.library
    return result


def rooms(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    clients, size = int(cfg.get("clients")), max(int(cfg.get("room_size")), 1)
    rate, duration = cfg.get("rate"), cfg.get("duration")
    msgs = max(int(rate * duration), 1)
    specs = [
        ConnSpec(i, run.room(f"rooms{i // size}"), source_address(i, clients))
        for i in range(clients)
    ]
    connect = run.connect(specs)
    audience: dict[str, int] = {}
    for spec in specs:
        audience[spec.room] = audience.get(spec.room, 0) + 1
    figures, _ = run.phase("rooms", {s.conn_id: s.room for s in specs}, rate, msgs, audience)
    _summary(run.ui, run.target.name, figures)
    return {"connect": connect, "phases": [_step(rate, figures, "rooms")]}


def churn(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    subs, rate, duration = int(cfg.get("subs")), cfg.get("rate"), cfg.get("duration")
    msgs = max(int(rate * duration), 1)
    room, connect = _one_room(run, "churn", subs)
    spec = ChurnSpec(room, CHURN_RATE, CHURN_HOLD_S, max(int(CHURN_RATE * duration), 1))
    figures, reports = run.phase(
        "churn",
        {0: room},
        rate,
        msgs,
        {room: connect["opened"]},
        drain_s=max(cfg.drain_s, CHURN_HOLD_S + 5),
        churn=spec,
    )
    _summary(run.ui, run.target.name, figures)
    opened = sum(r.churn_opened for r in reports)
    failed = sum(r.churn_failed for r in reports)
    connect_latency = latency_summary(
        merge_histograms(r.churn_connect_histogram for r in reports if r.churn_connect_histogram)
    )
    run.ui.note(f"  churn: {opened} connects, {failed} failed")
    return {
        "connect": connect,
        "phases": [_step(rate, figures, "churn")],
        "churn": {
            "rate": CHURN_RATE,
            "hold_s": CHURN_HOLD_S,
            "asked": spec.count,
            "opened": opened,
            "failed": failed,
            "connect_latency_ms": connect_latency.percentiles_ms,
        },
    }


def saturate(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    subs, rate, duration = int(cfg.get("subs")), cfg.get("rate"), cfg.get("duration")
    room, connect = _one_room(run, "saturate", subs)
    audience = {room: connect["opened"]}
    drain = max(3.0, 3 * cfg.bound_ms / 1000)
    steps: list[tuple[float, PhaseFigures]] = []

    def step(step_rate: float) -> bool:
        msgs = max(int(step_rate * duration), 10)
        label = f"{step_rate:.0f}/s"
        figures, _ = run.phase(label, {0: room}, step_rate, msgs, audience, drain_s=drain)
        steps.append((step_rate, figures))
        held = figures.held(cfg.bound_ms)
        run.ui.note(
            f"  {run.target.name} {step_rate:.0f} frames/s "
            f"({step_rate * audience[room]:,.0f} deliveries/s offered): "
            f"p99 {figures.latency.at(99):.1f} ms, lost {figures.lost}: "
            + ("held" if held else "not held")
        )
        time.sleep(1.0)
        return held

    good: float | None = None
    bad: float | None = None
    step_rate = rate
    for _ in range(SATURATE_MAX_STEPS):
        if not step(step_rate):
            bad = step_rate
            break
        good = step_rate
        step_rate *= SATURATE_FACTOR
    for _ in range(SATURATE_REFINE):
        if good is None or bad is None or bad / good < 1.15:
            break
        middle = math.sqrt(good * bad)  # bisect (geometrically) between held and failed
        if step(middle):
            good = middle
        else:
            bad = middle
    best = saturation_point(steps, cfg.bound_ms)
    best_figures = next((f for r, f in steps if r == best), None)
    return {
        "connect": connect,
        "phases": [_step(r, f, f"{r:.0f}/s") for r, f in steps],
        "headline": {
            "bound_ms": cfg.bound_ms,
            "max_rate": best,
            "max_deliveries_per_s": best * audience[room] if best is not None else None,
            "server_cpu_ms_per_1k": best_figures.server_cpu_ms_per_1k if best_figures else None,
        },
    }


def idle(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    clients, hold = int(cfg.get("clients")), cfg.get("duration")
    room = run.room("idle")
    pids = run.target.pids()
    before = worker_rss(pids) if pids else {}
    steps: list[dict[str, Any]] = []
    opened_total = 0
    for k in range(1, IDLE_STEPS + 1):
        upto = clients * k // IDLE_STEPS
        specs = [ConnSpec(i, room, source_address(i, clients)) for i in range(opened_total, upto)]
        connect = run.connect(specs) if specs else {"opened": 0}
        opened_total = upto
        rss = worker_rss(pids) if pids else {}
        held = connect.get("opened", 0) + (steps[-1]["held"] if steps else 0)
        steps.append({"target": upto, "held": held, "connect": connect, "rss": sum(rss.values())})
        run.ui.note(
            f"  {run.target.name}: {held} idle connections, {connect.get('failed', 0)} failed"
        )
    figures, reports = _hold(run, max(hold, 0.5))
    after = worker_rss(pids) if pids else {}
    held_end = sum(r.open_at_end for r in reports)
    per_conn = rss_slope(steps) if pids else None
    run.ui.note(
        f"  {run.target.name}: {held_end} held after {hold:.0f} s"
        + (f", {per_conn / 1024:.1f} KiB RSS per connection" if per_conn else "")
    )
    return {
        "steps": steps,
        "phases": [_step(0.0, figures, "idle")],
        "idle": {
            "asked": clients,
            "held_at_end": held_end,
            "hold_s": hold,
            "handshake_errors": sum(s["connect"].get("failed", 0) for s in steps),
            "connect_per_s": _mean([s["connect"].get("per_s") for s in steps]),
            "workers_rss_before": sum(before.values()),
            "workers_rss_after": sum(after.values()),
            "rss_per_connection_bytes": per_conn,
            "rss_per_connection_bytes_from_zero": (
                (sum(after.values()) - sum(before.get(pid, 0) for pid in after)) / held_end
                if held_end and pids
                else None
            ),
            "worker_processes": len(after),
        },
    }


def rss_slope(steps: list[dict[str, Any]]) -> float | None:
    """Worker RSS added per idle connection, from the first ramp step to the last.

    Measured from the first step rather than from zero so that what the first connections pay
    once (lazy imports, caches, pools warming up) is not charged to every connection.
    """
    if len(steps) < 2:
        return None
    first, last = steps[0], steps[-1]
    added = last["held"] - first["held"]
    return (last["rss"] - first["rss"]) / added if added > 0 else None


def _hold(run: Run, hold: float) -> tuple[PhaseFigures, list[PhaseReport]]:
    run.phase_no += 1
    spec = PhaseSpec(run.phase_no, {}, 1.0, 0, now_us() + 200_000, 0.0, hold_s=hold)
    run.meter.start()
    update = run.ui.phase(f"{run.target.name} hold {hold:.0f} s", 0)
    try:
        reports = run.lg.run_phase(spec, update)
    finally:
        run.ui.done()
    return figures_of(reports, spec, 0.0, run.meter.stop()), reports


def _mean(values: list[Any]) -> float | None:
    found = [float(v) for v in values if v is not None]
    return sum(found) / len(found) if found else None


RUNNERS = {
    "fanout": fanout,
    "rooms": rooms,
    "idle": idle,
    "churn": churn,
    "saturate": saturate,
    "clientlib": clientlib_run,
}


def run_stack(
    cfg: BenchConfig,
    name: str,
    ui: Ui,
    library: str | None = None,
    redis_topology: str = "single",
) -> dict[str, Any]:
    """Start stack ``name``, run the scenario on it, stop it; the stack's JSON record.

    A stack that fails to start or to take connections is recorded with ``ok: false`` and its
    error, so the other stacks of the run still report.
    """
    started = time.monotonic()
    record: dict[str, Any] = {"stack": name, "ok": False, "error": None}
    cfg.out.mkdir(parents=True, exist_ok=True)
    try:
        with open_target(
            name, workers=cfg.workers, log_dir=cfg.out, url=cfg.url,
            redis_topology=redis_topology, lb=cfg.lb,
        ) as target:  # fmt: skip
            record.update(
                lb=target.lb,
                description=target.description,
                ws_url=target.ws_url,
                processes=target.processes,
                server_pids=len(target.pids()),
            )
            meter = CostMeter(target.pids(), target.redis_url, target.redis_nodes)
            try:
                library = library or cfg.client_lib
                endpoint = replace(cfg.endpoint, wire=target.wire)
                with LoadGenerator(target.ws_url, cfg.procs, library, endpoint) as lg:
                    record["client_lib"] = lg.library
                    record["fd_limit"] = lg.fd_limit
                    record.update(RUNNERS[cfg.scenario](Run(cfg, target, lg, meter, ui)))
                    record["ok"] = True
            finally:
                meter.close()
    except ConfigError:
        raise
    except (ChannelsScaleError, OSError, RuntimeError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        ui.note(f"  {name}: failed: {record['error']}")
    record["seconds"] = time.monotonic() - started
    return record


def run_bench(cfg: BenchConfig, ui: Ui) -> list[dict[str, Any]]:
    """Run the scenario on every stack of ``cfg`` (or the ``--url`` target), one after the other."""
    if cfg.scenario not in RUNNERS:
        raise ConfigError(f"unknown scenario {cfg.scenario!r}; choose from {', '.join(SCENARIOS)}")
    records = []
    if cfg.scenario == "clientlib":
        name = "url" if cfg.url else "ceiling"
        for library in clientlib.LIBRARIES:
            ui.note(f"[bold]{name}[/bold] with client library {library}")
            records.append(run_stack(cfg, name, ui, library))
            records[-1]["stack"] = f"{name}/{library}"
        return records
    if cfg.redis_topologies and (cfg.url or cfg.scenario not in ("fanout", "saturate", "rooms")):
        raise ConfigError("--redis-topology goes with fanout, saturate or rooms, without --url")
    for topology in cfg.redis_topologies or []:  # the ours stack on each Redis topology
        ui.note(f"[bold]ours[/bold] on Redis {topology}: starting")
        records.append(run_stack(cfg, "ours", ui, redis_topology=topology))
        records[-1].update(stack=f"ours/{topology}", redis_topology=topology)
    if cfg.redis_topologies:
        return records
    for name in ["url"] if cfg.url else cfg.stacks:
        ui.note(f"[bold]{name}[/bold]: starting")
        records.append(run_stack(cfg, name, ui))
    return records
