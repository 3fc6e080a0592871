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
import time
from dataclasses import replace
from typing import Any

from channels_scale.bench import clientlib
from channels_scale.bench.clientproc import raise_fd_limit
from channels_scale.bench.connections import WARM_CONNECTIONS, connections, idle
from channels_scale.bench.costs import CostMeter
from channels_scale.bench.delivery import churn, clientlib_run, fanout, rooms, saturate
from channels_scale.bench.live import Ui
from channels_scale.bench.loadgen import LoadGenerator
from channels_scale.bench.run import DEFAULTS, BenchConfig, BenchError, Run
from channels_scale.bench.stacks import open_target
from channels_scale.exceptions import ChannelsScaleError, ConfigError

__all__ = ["DEFAULTS", "SCENARIOS", "BenchConfig", "BenchError", "run_bench", "run_stack"]

SCENARIOS = ("fanout", "rooms", "idle", "churn", "saturate", "clientlib", "connections")

RUNNERS = {
    "fanout": fanout,
    "rooms": rooms,
    "idle": idle,
    "churn": churn,
    "saturate": saturate,
    "clientlib": clientlib_run,
    "connections": connections,
}


CONNECTION_SCENARIOS = ("idle", "connections")
"""Scenarios whose connection count sizes the stack (``up --max-connections``) and the number of
client processes."""

CLIENT_RESERVED_FDS = 256
"""Descriptors of a client process not used by its websockets."""


def client_processes(procs: int, connections: int | None) -> int:
    """``procs``, or more when one client process cannot hold its share of ``connections``
    within its open-files limit (raised to the hard limit, which it cannot pass)."""
    if connections is None:
        return procs
    per_process = max(raise_fd_limit() - CLIENT_RESERVED_FDS, 1)
    return max(procs, math.ceil((connections + WARM_CONNECTIONS) / per_process))


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
        sized = int(cfg.get("clients")) if cfg.scenario in CONNECTION_SCENARIOS else None
        with open_target(
            name, workers=cfg.workers, log_dir=cfg.out, url=cfg.url,
            redis_topology=redis_topology, lb=cfg.lb, max_connections=sized,
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
                procs = client_processes(cfg.procs, sized)
                # A --url target speaks what --url-wire said; a stack the bench starts, its own.
                wire = cfg.endpoint.wire if cfg.url is not None else target.wire
                endpoint = replace(cfg.endpoint, wire=wire)
                record["wire"] = wire
                with LoadGenerator(target.ws_url, procs, library, endpoint) as lg:
                    record["client_lib"] = lg.library
                    record["client_procs"] = procs
                    record["fd_limit"] = lg.fd_limit
                    run = Run(cfg, target, lg, meter, ui)
                    record.update(RUNNERS[cfg.scenario](run))
                    record["warmup"] = run.warmup
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
