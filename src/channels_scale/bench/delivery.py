"""The delivery scenarios (fanout, rooms, churn, saturate, clientlib): frames published at a fixed
rate and accounted at every subscriber."""

from __future__ import annotations

import math
import time
from typing import Any

from channels_scale.bench.figures import (
    PhaseFigures,
    busiest_by_role,
    latency_summary,
    merge_histograms,
    saturation_point,
)
from channels_scale.bench.loadgen import ChurnSpec, ConnSpec, source_address
from channels_scale.bench.run import Run, one_room, step_record, summary

SATURATE_FACTOR = 2.0
SATURATE_MAX_STEPS = 12
SATURATE_REFINE = 2
SATURATE_MIN_FRAMES = 100
SATURATE_MIN_STEP_S = 2.0
CHURN_RATE = 10.0
CHURN_HOLD_S = 1.0


def fanout(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    subs, rate, msgs = int(cfg.get("subs")), cfg.get("rate"), int(cfg.get("msgs"))
    room, connect = one_room(run, "fanout", subs)
    figures, _ = run.phase("fanout", {0: room}, rate, msgs, {room: connect["opened"]})
    summary(run.ui, run.target.name, figures)
    return {"connect": connect, "phases": [step_record(rate, figures, "fanout")]}


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
    summary(run.ui, run.target.name, figures)
    return {"connect": connect, "phases": [step_record(rate, figures, "rooms")]}


def churn(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    subs, rate, duration = int(cfg.get("subs")), cfg.get("rate"), cfg.get("duration")
    msgs = max(int(rate * duration), 1)
    room, connect = one_room(run, "churn", subs)
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
    summary(run.ui, run.target.name, figures)
    opened = sum(r.churn_opened for r in reports)
    failed = sum(r.churn_failed for r in reports)
    connect_latency = latency_summary(
        merge_histograms(r.churn_connect_histogram for r in reports if r.churn_connect_histogram)
    )
    run.ui.note(f"  churn: {opened} connects, {failed} failed")
    return {
        "connect": connect,
        "phases": [step_record(rate, figures, "churn")],
        "churn": {
            "rate": CHURN_RATE,
            "hold_s": CHURN_HOLD_S,
            "asked": spec.count,
            "opened": opened,
            "failed": failed,
            "connect_latency_ms": connect_latency.percentiles_ms,
        },
    }


def step_frames(rate: float, duration: float) -> int:
    """Frames one saturate step sends: ``duration`` s of them, but at least
    :data:`SATURATE_MIN_FRAMES` and :data:`SATURATE_MIN_STEP_S` s, whichever is longer, so that
    the step's p99 is not one frame's latency."""
    return max(math.ceil(rate * max(duration, SATURATE_MIN_STEP_S)), SATURATE_MIN_FRAMES)


def busiest(figures: PhaseFigures) -> dict[str, float]:
    """Per role (worker, lb, redis, supervisor, and ``client`` for the load generator), the
    busiest process's CPU as a share of one core over the step's window: the process at ~100%
    when a step fails is what bounds the stack."""
    found = busiest_by_role(figures.costs.cpu_by_process, figures.window_s)
    found["client"] = max((c.utilization for c in figures.clients), default=0.0)
    return {role: round(share, 3) for role, share in found.items()}


def saturate(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    subs, rate, duration = int(cfg.get("subs")), cfg.get("rate"), cfg.get("duration")
    room, connect = one_room(run, "saturate", subs)
    audience = {room: connect["opened"]}
    drain = max(3.0, 3 * cfg.bound_ms / 1000)
    steps: list[tuple[float, PhaseFigures]] = []

    def step(step_rate: float) -> bool:
        msgs = step_frames(step_rate, duration)
        label = f"{step_rate:.0f}/s"
        figures, _ = run.phase(label, {0: room}, step_rate, msgs, audience, drain_s=drain)
        steps.append((step_rate, figures))
        held = figures.held(cfg.bound_ms)
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(busiest(figures).items()))
        run.ui.note(
            f"  {run.target.name} {step_rate:.0f} frames/s "
            f"({step_rate * audience[room]:,.0f} deliveries/s offered): "
            f"p99 {figures.latency.at(99):.1f} ms, lost {figures.lost}: "
            + ("held" if held else "not held")
            + f"; busiest process per role, share of a core: {shares}"
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
        "phases": [
            {**step_record(r, f, f"{r:.0f}/s"), "busiest_cpu": busiest(f)} for r, f in steps
        ],
        "headline": {
            "bound_ms": cfg.bound_ms,
            "max_rate": best,
            "max_deliveries_per_s": best * audience[room] if best is not None else None,
            "server_cpu_ms_per_1k": best_figures.server_cpu_ms_per_1k if best_figures else None,
        },
    }
