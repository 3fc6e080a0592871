"""What every scenario shares: the run's options, one stack under load, a phase, its figures."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channels_scale.bench import clientlib
from channels_scale.bench.costs import CostMeter
from channels_scale.bench.endpoint import Endpoint
from channels_scale.bench.figures import (
    PhaseFigures,
    ServerCosts,
    delivery_figures,
    latency_summary,
    merge_histograms,
    redis_node_figures,
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
from channels_scale.bench.stacks import Target
from channels_scale.exceptions import ChannelsScaleError

DEFAULTS: dict[str, dict[str, float]] = {
    "fanout": {"subs": 200, "rate": 50, "msgs": 1000},
    "rooms": {"clients": 200, "room_size": 10, "rate": 2, "duration": 10},
    "idle": {"clients": 2000, "duration": 10},
    "churn": {"subs": 100, "rate": 20, "duration": 20},
    "saturate": {"subs": 200, "rate": 5, "duration": 5},
    "clientlib": {"subs": 100, "rate": 100, "msgs": 1000},
    "connections": {"clients": 20000, "rate": 1, "duration": 100},
}
"""Per-scenario defaults (frames/s per publisher, seconds); each finishes in about a minute."""

WARMUP_FRAMES = 10
"""Frames each warm-up publisher sends before the first measured phase (then discarded).

Ten, not one: the misbehaving test servers count frames per room modulo 10, so a warm-up of ten
keeps the measured frames' positions; and ten frames reach every lazy path (script loading,
first-use imports, buffers) on a stack whose first frame is slow."""

WARMUP_RATE = 20.0
WARMUP_DRAIN_S = 3.0


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
        self.warmup: dict[str, Any] | None = None

    def room(self, label: str) -> str:
        return f"bench-{label}-{self.token}"

    def connect(self, specs: list[ConnSpec], concurrency: int = 50) -> dict[str, Any]:
        """Open ``specs``, ``concurrency`` handshakes at a time at most (over all client
        processes); raise :class:`BenchError` when none opens."""
        report = self.lg.connect(specs, concurrency)
        if report.opened == 0 and specs:
            raise BenchError(f"no client could connect: {'; '.join(report.errors[:2])}")
        time.sleep(0.5)  # group joins finish after the handshake on some stacks
        handshakes = latency_summary(
            merge_histograms([report.histogram] if report.histogram else [])
        )
        return {
            "asked": len(specs),
            "opened": report.opened,
            "failed": report.failed,
            "seconds": report.seconds,
            "per_s": report.opened / report.seconds if report.seconds > 0 else None,
            "errors": report.errors,
            "latency_ms": handshakes.percentiles_ms if handshakes.count else None,
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
        """Run one measured phase; ``audience`` is the connections per room (for the offer).

        The first phase of a run is preceded by :meth:`warm_up` on the same rooms.
        """
        if self.warmup is None:
            self.warm_up(publishers)
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

    def warm_up(self, publishers: dict[int, str]) -> dict[str, Any]:
        """Send :data:`WARMUP_FRAMES` from one publisher per room and discard what they measure.

        A stack's first frames pay what later ones do not (our layer's first ``group_send`` runs
        ``EVAL`` before ``EVALSHA`` is cached; lazy imports; buffers): without this, a short first
        phase measures the warm-up. The warm-up is its own phase number, so a late warm-up frame
        is stale (not a delivery, not a latency) in the next phase; it is not metered. What it saw
        is kept in the record (``warmup``) to show what the first frames cost.
        """
        first: dict[str, int] = {}
        for conn_id, room in sorted(publishers.items()):
            first.setdefault(room, conn_id)
        self.phase_no += 1
        spec = PhaseSpec(
            phase=self.phase_no,
            publishers={conn_id: room for room, conn_id in first.items()},
            rate=WARMUP_RATE,
            msgs=WARMUP_FRAMES if first else 0,
            start_at_us=now_us() + 200_000,
            drain_s=WARMUP_DRAIN_S,
        )
        update = self.ui.phase(f"{self.target.name} warm-up", 0)
        try:
            reports = self.lg.run_phase(spec, update)
        finally:
            self.ui.done()
        figures = figures_of(reports, spec, 0.0, ServerCosts())
        self.warmup = {
            "publishers": len(first),
            "sent": figures.sent,
            "deliveries": figures.deliveries,
            "lost": figures.lost,
            "p50_ms": figures.latency.at(50),
            "max_ms": figures.latency.at(100),
        }
        return self.warmup


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


def one_room(run: Run, label: str, subs: int) -> tuple[str, dict[str, Any]]:
    room = run.room(label)
    specs = [ConnSpec(i, room, source_address(i, subs)) for i in range(subs)]
    return room, run.connect(specs)


def step_record(rate: float, figures: PhaseFigures, label: str) -> dict[str, Any]:
    step = {"label": label, "rate": rate, "figures": figures.to_json()}
    nodes = redis_node_figures(figures)
    if nodes:  # `--redis-topology`: CPU and commands per Redis node
        step["redis_nodes"] = nodes
    return step


def summary(ui: Ui, name: str, f: PhaseFigures) -> None:
    ui.note(
        f"  {name}: {f.deliveries_per_s:,.0f} deliveries/s, p50 {f.latency.at(50):.1f} ms, "
        f"p99 {f.latency.at(99):.1f} ms, lost {f.lost}, dup {f.duplicated}, "
        f"reordered {f.reordered}, client cpu max "
        f"{max((c.utilization for c in f.clients), default=0):.0%}"
    )
