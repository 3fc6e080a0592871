"""The fault suite: each fault under load from real websocket clients through nginx.

One ``channels-scale up --workers 2`` stack (nginx, supervisor, uvicorn, our Redis with an
append-only file) serves every case; each case runs its own load on its own room: 20 stream
clients that resume from their offset (history on, see :mod:`tests.faults.stackapp`) and 10
broadcast canaries, each sending once a second. Per case, recorded in :mod:`tests.faults.figures`
and asserted:

- consumers crashed: 0 (no traceback in the worker logs, no 1011 close, no worker pid changed
  except the ones the case restarts);
- messages lost for clients that resume: 0 (no skipped offset, duplicate or silent epoch change);
- every client served again (each within 5 s, all within 20 s of the fault) and every stream
  client receiving new messages within 15 s of the fault's end.

Run: ``uv run --frozen pytest tests/faults -m e2e`` (the figures table prints at the end).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from broadcast.consumers import NOT_DELIVERED
from channels_scale.closecodes import CloseCode
from channels_scale.net import timeout_factor
from channels_scale.stack.health import worker_health
from tests.conftest import RedisProcess
from tests.faults.conftest import FaultStack
from tests.faults.figures import FIGURES, CaseFigures
from tests.faults.load import Load
from tests.faults.stacksettings import SEND_TIMEOUT

pytestmark = pytest.mark.e2e

STREAMS = 20
CANARIES = 10
INTERVAL = 1.0  # seconds between two messages of one client
WAIT = 10 * timeout_factor()  # one handshake or one frame
MIN_CASE_S = 3.0  # the load runs at least this long after a fault starts
WORKERS = (0, 1)
SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")
TRACEBACK = "Traceback (most recent call last)"

Inject = Callable[[FaultStack, Load, dict[int, int]], Awaitable[float]]  # -> when it ended


async def until(predicate: Callable[[], object], within: float, blocking: bool = False) -> float:
    """Poll ``predicate`` until true (bounded: fails after ``within`` scaled seconds); returns
    the seconds it took. ``blocking``: the predicate does I/O, so it runs in a thread."""
    start = time.monotonic()
    # The state polled belongs to other processes or to the clients' tasks: no event to await.
    async with asyncio.timeout(within * timeout_factor()):
        while not (await asyncio.to_thread(predicate) if blocking else predicate()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return time.monotonic() - start


def worker_pid(faults: FaultStack, worker: int) -> int | None:
    health = worker_health(faults.run_dir / "sockets" / f"worker-{worker}.sock", timeout=1)
    return None if health is None else int(health["pid"])


def supervisorctl(faults: FaultStack, *args: str) -> str:
    done = subprocess.run(
        [SUPERVISORCTL, "-c", str(faults.run_dir / "supervisord.conf"), *args],
        capture_output=True, text=True, timeout=60 * timeout_factor(), check=False,
    )  # fmt: skip
    return done.stdout + done.stderr


def worker_logs(faults: FaultStack) -> list[Path]:
    return [faults.run_dir / "logs" / f"worker-{w}.log" for w in WORKERS]


def log_sizes(faults: FaultStack) -> list[int]:
    return [path.stat().st_size if path.exists() else 0 for path in worker_logs(faults)]


def tracebacks_since(faults: FaultStack, sizes: list[int]) -> list[str]:
    found = []
    for path, size in zip(worker_logs(faults), sizes, strict=True):
        with path.open("rb") as log:
            log.seek(size)
            text = log.read().decode(errors="replace")
        if TRACEBACK in text:
            found.append(f"{path.name}:\n{text[max(0, text.index(TRACEBACK) - 300) :][:8000]}")
    return found


async def served_fresh(faults: FaultStack, room: str) -> None:
    """A new client is served (welcome) after the case, through nginx."""
    async with connect(f"{faults.ws_url}/ws/stream/{room}/", open_timeout=WAIT) as ws:
        async with asyncio.timeout(WAIT):
            assert '"welcome"' in str(await ws.recv())


async def run_case(
    faults: FaultStack, case: str, inject: Inject, restarted: frozenset[int] = frozenset()
) -> tuple[CaseFigures, Counter[str], Load]:
    """Start the load, inject the fault, wait for recovery, stop the load; record the figures."""
    load = Load(faults.ws_url, case, STREAMS, CANARIES, INTERVAL)
    load.start()
    try:
        # warm: every client served, every stream client holds a position to resume from
        await until(lambda: load.all_open() and all(s.epoch for s in load.streams), 30)
        pids = {w: await asyncio.to_thread(worker_pid, faults, w) for w in WORKERS}
        sizes = log_sizes(faults)
        before = load.totals()
        reconnections_before = {id(c): len(c.reconnections) for c in load.clients}
        started = time.monotonic()
        ended = await inject(faults, load, {w: p for w, p in pids.items() if p is not None})
        await until(load.all_open, 60)
        all_back = time.monotonic()
        flowing = await until(lambda: load.flowing_since(ended), 60)
        # a message sent after everyone was back reached every stream client: any offset a
        # client missed would show as a gap by now (the consumer fills holes before it)
        # (and the load ran at least MIN_CASE_S past the fault's start)
        await until(lambda: load.flowing_since(max(all_back, started + MIN_CASE_S)), 30)
    finally:
        await load.stop()
    await served_fresh(faults, case)
    after = load.totals()
    assert not load.failed_tasks(), load.failed_tasks()
    counts = after - before

    new_pids = {w: await asyncio.to_thread(worker_pid, faults, w) for w in WORKERS}
    unexpected = [w for w in WORKERS if (new_pids[w] != pids[w]) != (w in restarted)]
    tracebacks = tracebacks_since(faults, sizes)
    closes_1011 = counts["stream.close_1011"] + counts["canary.close_1011"]
    reconnections = [
        (served - dropped, served, c.kind, c.ident)
        for c in load.clients
        for dropped, served in c.reconnections[reconnections_before[id(c)] :]
    ]
    figures = CaseFigures(
        case=case,
        clients=len(load.clients),
        crashed=len(tracebacks) + closes_1011 + len(unexpected),
        delivered=counts["stream.received"],
        lost=counts["stream.lost"],
        duplicates=counts["stream.duplicate"],
        drops=counts["stream.drops"] + counts["canary.drops"],
        max_reconnect=max((r[0] for r in reconnections), default=0.0),
        all_connected=max((r[1] - started for r in reconnections), default=0.0),
        flowing=flowing,
        reloads_epoch=counts["reload.epoch"],
        not_delivered=counts["stream.not_delivered"] + counts["canary.not_delivered"],
    )
    FIGURES.append(figures)
    print(case, "slowest reconnections:", sorted(reconnections)[-3:], dict(counts))
    assert not tracebacks, "\n".join(tracebacks)
    assert closes_1011 == 0, counts
    assert not unexpected, f"workers {unexpected} restarted unexpectedly: {pids} -> {new_pids}"
    for name in ("lost", "duplicate", "silent_epoch", "mismatch", "gave_up", "unexpected_frame"):
        assert counts[f"stream.{name}"] == 0, (name, counts)
    assert counts["canary.gave_up"] == 0, counts
    # bounds on recovery: clients back within seconds (the stack's promise, not a benchmark)
    assert figures.max_reconnect < 5 * timeout_factor(), sorted(reconnections)[-3:]
    assert figures.all_connected < 20 * timeout_factor(), sorted(reconnections)[-3:]
    assert figures.flowing < 15 * timeout_factor(), figures
    return figures, counts, load


async def kill_worker(faults: FaultStack, load: Load, pids: dict[int, int]) -> float:
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)  # a pid of our own stack, read from its health socket
    await until(lambda: (pid := worker_pid(faults, 0)) is not None and pid != victim, 30, True)
    return time.monotonic()


async def restart_workers_one_by_one(faults: FaultStack, load: Load, pids: dict[int, int]) -> float:
    for worker in WORKERS:
        output = await asyncio.to_thread(
            supervisorctl, faults, "restart", f"worker:worker-{worker}"
        )
        assert "started" in output, output
        old = pids[worker]
        await until(lambda w=worker, o=old: worker_pid(faults, w) not in (None, o), 30, True)
    return time.monotonic()


def nginx_children(master: int) -> set[int]:
    path = Path(f"/proc/{master}/task/{master}/children")
    return {int(pid) for pid in path.read_text().split()}


async def reload_nginx(faults: FaultStack, load: Load, pids: dict[int, int]) -> float:
    master = int((await asyncio.to_thread(supervisorctl, faults, "pid", "lb")).strip())
    before = nginx_children(master)
    os.kill(master, signal.SIGHUP)  # nginx's reload: new config, new workers, old ones drain
    await until(lambda: nginx_children(master) - before, 30)
    return time.monotonic()


def not_delivered(load: Load) -> int:
    totals = load.totals()
    return totals["stream.not_delivered"] + totals["canary.not_delivered"]


async def outage_answers(faults: FaultStack) -> tuple[list[str], int | None]:
    """New clients while Redis is down: what a broadcast sender gets back, and the close code of
    a stream client (documented: 1013 once its history read failed for send_timeout)."""
    async with asyncio.timeout(30 * timeout_factor()):
        async with connect(f"{faults.ws_url}/ws/broadcast/outage-probe/", open_timeout=WAIT) as ws:
            await ws.send("probe")
            replies = [str(await ws.recv()), str(await ws.recv())]  # the error, the local copy
        async with connect(f"{faults.ws_url}/ws/stream/outage-probe/", open_timeout=WAIT) as ws:
            try:
                async for _ in ws:
                    pass
            except ConnectionClosed as closed:
                return replies, closed.rcvd.code if closed.rcvd else None
            return replies, ws.close_code


async def stop_redis_past_send_timeout(
    faults: FaultStack, load: Load, pids: dict[int, int], probes: list[tuple[list[str], int | None]]
) -> float:
    answered = not_delivered(load)
    await asyncio.to_thread(faults.redis.stop)
    down = time.monotonic()
    probes.append(await outage_answers(faults))
    # down until senders were answered not_delivered (they waited the whole send_timeout)
    await until(
        lambda: not_delivered(load) > answered and time.monotonic() - down > 1.5 * SEND_TIMEOUT,
        30,
    )
    await asyncio.to_thread(faults.redis.start)  # same port, same append-only file
    return time.monotonic()


async def restart_redis_empty(faults: FaultStack, load: Load, pids: dict[int, int]) -> float:
    empty = faults.base / "redis-empty"
    empty.mkdir()
    await asyncio.to_thread(faults.redis.stop)
    faults.redis = RedisProcess(empty, port=faults.redis.port)  # no persistence: history gone
    await asyncio.to_thread(faults.redis.start)
    return time.monotonic()


async def test_nginx_reload(fault_stack: FaultStack) -> None:
    _, counts, _ = await run_case(fault_stack, "nginx-reload", reload_nginx)
    assert counts["reload.epoch"] == 0


async def test_worker_sigkill(fault_stack: FaultStack) -> None:
    figures, counts, _ = await run_case(fault_stack, "worker-sigkill", kill_worker, frozenset({0}))
    assert figures.drops >= 1, "no client was on the killed worker: the case tested nothing"
    assert counts["reload.epoch"] == 0


async def test_workers_restarted_one_by_one(fault_stack: FaultStack) -> None:
    figures, counts, _ = await run_case(
        fault_stack, "rolling-restart", restart_workers_one_by_one, frozenset({0, 1})
    )
    assert figures.drops >= STREAMS + CANARIES, "every client should have moved once at least"
    assert counts["reload.epoch"] == 0


async def test_redis_stopped_past_send_timeout(fault_stack: FaultStack) -> None:
    probes: list[tuple[list[str], int | None]] = []
    inject = functools.partial(stop_redis_past_send_timeout, probes=probes)
    _, counts, _ = await run_case(fault_stack, "redis-stopped", inject)
    # senders were told (the broadcast consumer's fix), nobody's consumer died, and the
    # append-only file kept the history: clients resume without a reload
    assert counts["canary.not_delivered"] >= 1, counts
    assert counts["reload.epoch"] == 0, counts
    # clients arriving during the outage get the documented answers
    [(replies, stream_close)] = probes
    assert NOT_DELIVERED in replies, replies
    assert stream_close == CloseCode.TRY_AGAIN_LATER


async def test_redis_restarted_without_persistence(fault_stack: FaultStack) -> None:
    _, counts, load = await run_case(fault_stack, "redis-empty", restart_redis_empty)
    # the documented answer to a lost history: every stream client told to reload (epoch)
    assert all(s.reloads["epoch"] >= 1 for s in load.streams), [s.reloads for s in load.streams]
    assert counts["stream.silent_epoch"] == 0
