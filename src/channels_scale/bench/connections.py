"""The connection scenarios: idle (connections held, memory per connection) and connections
(a connect storm to C websockets, then a broadcast to all of them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from channels_scale.bench.costs import role, rss_bytes, with_descendants, worker_rss
from channels_scale.bench.figures import PhaseFigures, per_unit
from channels_scale.bench.loadgen import ConnSpec, PhaseReport, PhaseSpec, now_us, source_address
from channels_scale.bench.run import Run, figures_of, step_record, summary

IDLE_STEPS = 4

STORM_CONCURRENCY = 1000
"""Handshakes in flight at once during the connect storm, over all client processes."""

STORM_BOUND_S = 30.0
"""The connect storm's target: every connection open within this many seconds."""

WARM_CONNECTIONS = 10
"""Connections of the warm-up, each in a room of its own (so each publishes its own warm-up
frames, spread by the load balancer over the workers); they stay open, outside the figures."""


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
        "phases": [step_record(0.0, figures, "idle")],
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


def rss_by_role(pids: Iterable[int]) -> dict[str, int]:
    """RSS in bytes of the server-side processes (and descendants) summed by role."""
    found: dict[str, int] = {}
    for pid in with_descendants(pids):
        value = rss_bytes(pid)
        if value is not None:
            name = role(pid)
            found[name] = found.get(name, 0) + value
    return found


def connections(run: Run) -> dict[str, Any]:
    """C websockets opened at once (the storm), then a broadcast to all of them at R/s for D s.

    Warm-up first (:data:`WARM_CONNECTIONS` connections and their frames, outside the figures);
    then the storm: time until all are open, handshake errors and latency; the server's RSS
    added per connection (workers, load balancer); then the broadcast: one publisher among the
    C, every frame owed to all C (loss, delivery latency); and how many are still open at the end.
    """
    cfg = run.cfg
    clients, rate, duration = int(cfg.get("clients")), cfg.get("rate"), cfg.get("duration")
    warm = [ConnSpec(clients + i, run.room(f"warm{i}")) for i in range(WARM_CONNECTIONS)]
    run.connect(warm)
    run.warm_up({spec.conn_id: spec.room for spec in warm})
    pids = run.target.pids()
    before = rss_by_role(pids) if pids else {}
    room = run.room("conns")
    specs = [ConnSpec(i, room, source_address(i, clients)) for i in range(clients)]
    run.meter.start()
    storm = run.connect(specs, STORM_CONCURRENCY)
    storm_costs = run.meter.stop()
    after = rss_by_role(pids) if pids else {}
    opened = int(storm["opened"])
    run.ui.note(
        f"  {run.target.name}: {opened:,} of {clients:,} open in {storm['seconds']:.1f} s, "
        f"{storm['failed']} handshake errors"
    )
    msgs = max(round(rate * duration), 1)
    figures, reports = run.phase("broadcast", {0: room}, rate, msgs, {room: opened})
    summary(run.ui, run.target.name, figures)
    held = sum(r.open_at_end for r in reports) - WARM_CONNECTIONS

    def per_connection(names: tuple[str, ...]) -> float | None:
        if not pids or not opened:
            return None
        return sum(after.get(n, 0) - before.get(n, 0) for n in names) / opened

    return {
        "connect": storm,
        "phases": [step_record(rate, figures, "broadcast")],
        "connections": {
            "asked": clients,
            "opened": opened,
            "handshake_errors": storm["failed"],
            "seconds_to_all": storm["seconds"],
            "within_bound": opened == clients and storm["seconds"] <= STORM_BOUND_S,
            "bound_s": STORM_BOUND_S,
            "connect_latency_ms": storm["latency_ms"],
            # what the storm cost the server, and what else ran on the machine meanwhile (cores)
            "storm_server_cpu_ms_per_connection": per_unit(storm_costs.cpu_s, opened, 1e3),
            "storm_cpu_by_role": storm_costs.cpu_by_role,
            "storm_machine_cores": per_unit(storm_costs.machine_cpu_s, storm_costs.wall_s or 0),
            "sources": len({s.source for s in specs}),
            "held_at_end": held,
            "rss_before": before,
            "rss_after": after,
            "rss_per_connection_bytes": per_connection(("worker",)),
            "lb_rss_per_connection_bytes": per_connection(("lb",)),
            "server_rss_per_connection_bytes": per_connection(tuple(after)),
        },
    }
