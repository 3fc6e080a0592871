"""The hostile-input run (issue 13, item 8): ≥ 10,000 generated inputs against a live stack.

``channels-scale up --workers 2`` (nginx, uvicorn, Redis), canary clients broadcasting throughout,
and every input of :mod:`tests.security.hostile` sent through nginx, 16 connections at a time.
Each input must get its documented answer (docs/security.md), both workers must keep their pids,
every refusal must be counted in ``/healthz``, and the canaries must lose nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from channels_scale.net import timeout_factor
from channels_scale.stack.health import worker_health
from tests.security import hostile, strategies
from tests.security.flood import canaries, cpu_seconds, fragment_flood
from tests.security.hostile import Probe, Tally
from tests.security.rawws import RawSocket
from tests.stackrunner import RunningStack

pytestmark = pytest.mark.e2e

SEED = 13
#: Session items per connection: many inputs per handshake keeps the run short.
PER_SESSION = 75
COUNTS = {
    "session": 7_500,
    "oversize": 150,
    "invalid_utf8": 300,
    "protocol": 450,
    "fragment_flood": 150,
    "ping_flood": 150,
    "origin": 450,
    "host": 450,
    "path": 300,
    "query": 300,
}
CONCURRENCY = 16
WAIT = 10 * timeout_factor()
SPOOFED = "203.0.113.66"
FLOOD_SECONDS = 2.0


def _probes() -> tuple[list[list[Probe]], list[Probe], list[Probe]]:
    items = strategies.draw(strategies.session_items, COUNTS["session"], SEED)
    session_probes = [hostile.session_probe(item) for item in items]
    sessions = [
        session_probes[i : i + PER_SESSION] for i in range(0, len(session_probes), PER_SESSION)
    ]
    terminal = hostile.terminal_probes(
        strategies.draw(strategies.oversize, COUNTS["oversize"], SEED),
        strategies.draw(strategies.invalid_utf8, COUNTS["invalid_utf8"], SEED),
        strategies.draw(strategies.protocol, COUNTS["protocol"], SEED),
        strategies.draw(strategies.floods, COUNTS["fragment_flood"], SEED),
        strategies.draw(strategies.ping_floods, COUNTS["ping_flood"], SEED),
    )
    handshakes = [
        Probe("origin", origin, expected)
        for origin, expected in strategies.draw(strategies.origins, COUNTS["origin"], SEED)
    ]
    handshakes += [
        Probe("host", host, expected)
        for host, expected in strategies.draw(strategies.hosts, COUNTS["host"], SEED)
    ]
    handshakes += [
        Probe("path", path, hostile.UNMATCHED_PATH)
        for path in strategies.draw(strategies.paths, COUNTS["path"], SEED)
    ]
    handshakes += [
        Probe("query", query, "HTTP 101")
        for query in strategies.draw(strategies.queries, COUNTS["query"], SEED)
    ]
    return sessions, terminal, handshakes


def _health(stack: RunningStack) -> list[dict[str, Any]]:
    found = []
    for worker in (0, 1):
        health = worker_health(stack.run_dir.resolve() / "sockets" / f"worker-{worker}.sock")
        assert health is not None, f"worker {worker} does not answer /healthz"
        found.append(health)
    return found


async def test_hostile_inputs_get_their_documented_answers(start_stack: Any) -> None:
    stack: RunningStack = start_stack("--workers", "2")
    port = stack.port
    before = _health(stack)
    sessions, terminal, handshakes = _probes()

    jobs: list[Any] = [
        (lambda s=session, n=n: hostile.run_session(port, f"h{n}", s, WAIT))
        for n, session in enumerate(sessions)
    ]
    jobs += [(lambda p=p: hostile.run_terminal(port, p, WAIT)) for p in terminal]
    jobs += [(lambda p=p: hostile.run_handshake(port, p, WAIT)) for p in handshakes]
    random.Random(SEED).shuffle(jobs)  # floods interleaved with everything else

    stop, ready = asyncio.Event(), asyncio.Event()
    canary_task = asyncio.create_task(canaries(port, "canary", 10, stop, ready=ready))
    await asyncio.wait_for(ready.wait(), WAIT)
    started = time.monotonic()
    await asyncio.wait_for(hostile.bounded(jobs, CONCURRENCY), 240 * timeout_factor())
    elapsed = time.monotonic() - started
    # Then the flood of issue 13 itself, sustained: one client sending empty continuation frames
    # as fast as it can, reconnecting whenever it is closed. Unbounded, its first connection
    # would take a worker's whole CPU for the whole time.
    cpu_before = sum(cpu_seconds(h["pid"]) for h in before)
    flood = await fragment_flood(port, "/ws/broadcast/flood/", FLOOD_SECONDS)
    flood_cpu = sum(cpu_seconds(h["pid"]) for h in before) - cpu_before
    stop.set()
    canary = await canary_task

    # A client-chosen X-Forwarded-For never reaches the worker (nginx overwrites it).
    spoof = await RawSocket.open(
        port, "/ws/broadcast/spoof/", headers=[("X-Forwarded-For", SPOOFED)]
    )
    assert spoof.answer.status == 101
    await spoof.close()

    tally = Tally()
    for probe in [p for s in sessions for p in s] + terminal + handshakes:
        tally.add(probe)
    after = _health(stack)
    refused: dict[str, int] = {}
    for health in after:
        for reason, count in health["refused"].items():
            refused[reason] = refused.get(reason, 0) + count
    summary = {
        "inputs": tally.inputs,
        "seconds": round(elapsed, 1),
        "answers": tally.answers,
        "refused_counted": refused,
        "canary_messages": canary.expected,
        "canary_loss": canary.loss,
        "canary_p50_ms": round(canary.percentile(0.5) * 1000, 1),
        "canary_p99_ms": round(canary.percentile(0.99) * 1000, 1),
        "flood_connections": flood.connections,
        "flood_frames": flood.frames,
        "flood_worker_cpu_seconds": round(flood_cpu, 2),
    }
    print(json.dumps(summary, indent=1, sort_keys=True))

    assert tally.inputs >= 10_000
    assert tally.mismatches == []
    assert [h["pid"] for h in after] == [h["pid"] for h in before], "a worker restarted"
    # Unmatched paths never connect and never answer 5xx (the example's routing answers 404;
    # nginx answers 400 for the few request lines it refuses itself).
    paths = tally.answers["path"]
    assert "HTTP 101" not in paths and "no answer" not in paths, paths
    assert not [answer for answer in paths if answer.startswith("HTTP 5")], paths
    # Every refusal the workers made is counted: one per refused probe, none for anything else.
    assert refused.get("origin", 0) == tally.answers["origin"].get("HTTP 403", 0)
    fragments = refused.get("too many fragments", 0) - COUNTS["fragment_flood"]
    # Every flood connection was closed by the bound (the last one may have been cut short by
    # the end of the flood before it sent a frame).
    assert flood.connections - 1 <= fragments <= flood.connections, (fragments, flood)
    assert flood.connections > 10
    assert flood_cpu / flood.connections < 0.02, "a flood connection cost over 20 ms of CPU"
    assert refused.get("too many control frames", 0) == COUNTS["ping_flood"]
    host_400 = tally.answers["host"].get("HTTP 400", 0)
    assert 0 < refused.get("host", 0) <= host_400
    assert canary.loss == 0
    assert canary.percentile(0.99) < 2 * timeout_factor()

    assert SPOOFED not in _worker_logs(stack.run_dir)


def _worker_logs(run_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (run_dir / "logs").glob("worker-*.log"))
