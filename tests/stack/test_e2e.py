"""``channels-scale up`` end to end: real supervisor, nginx/HAProxy, workers, Redis, clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from channels_scale.net import port_in_use, timeout_factor
from channels_scale.stack.health import http_status, worker_health
from tests.stackrunner import RunningStack, all_gone, run_cli, stack_members

pytestmark = pytest.mark.e2e
WAIT = 10 * timeout_factor()


async def _clients(url: str, count: int) -> list[ClientConnection]:
    return list(await asyncio.gather(*(connect(url, open_timeout=WAIT) for _ in range(count))))


async def _assert_everyone_receives(clients: list[ClientConnection], frame: str) -> None:
    await clients[0].send(frame)
    received = await asyncio.gather(*(asyncio.wait_for(c.recv(), WAIT) for c in clients))
    assert received == [frame] * len(clients)


def _health(stack: RunningStack, worker: int) -> dict[str, Any] | None:
    return worker_health(stack.run_dir.resolve() / "sockets" / f"worker-{worker}.sock")


def _wait_for(predicate: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout * timeout_factor()
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail("condition not met in time")


@pytest.mark.parametrize(
    ("lb", "server"),
    [("nginx", "uvicorn"), ("haproxy", "daphne")],
    ids=["nginx-uvicorn", "haproxy-daphne"],
)
async def test_up_spreads_broadcasts_restarts_and_stops_clean(
    start_stack: Any, lb: str, server: str
) -> None:
    stack: RunningStack = start_stack("--workers", "2", "--lb", lb, "--server", server)
    url = f"{stack.ws_url}/ws/broadcast/e2e/"
    assert http_status("127.0.0.1", stack.port, "/healthz") == 200
    # uvicorn makes its sockets 0666: only the directory keeps other local users off the workers.
    assert (stack.run_dir / "sockets").stat().st_mode & 0o777 == 0o700
    members = stack_members(stack.run_dir)

    clients = await _clients(url, 24)
    counts = [_health(stack, w)["websockets"] for w in (0, 1)]  # type: ignore[index]
    assert sum(counts) == 24
    assert min(counts) > 0, f"least-connections did not spread clients: {counts}"
    await _assert_everyone_receives(clients, json.dumps({"n": 1, "pad": "x" * 80}))

    status = run_cli("status", "--run-dir", str(stack.run_dir))
    assert status.returncode == 0, status.stderr
    assert "worker-0" in status.stdout and "RUNNING" in status.stdout
    assert "STARTING" not in "".join(stack.output) + status.stdout

    # A worker killed hard is restarted by supervisor; new clients connect and get broadcasts.
    victim = _health(stack, 0)
    assert victim is not None
    os.kill(victim["pid"], signal.SIGKILL)
    restarted = _wait_for(lambda: (h := _health(stack, 0)) and h["pid"] != victim["pid"] and h)
    assert restarted["worker"] == "0"
    for client in clients:
        await client.close()
    fresh = await _clients(url, 10)
    await _assert_everyone_receives(fresh, "after restart")
    for client in fresh:
        await client.close()

    members += stack_members(stack.run_dir)  # the restarted worker too
    if lb == "haproxy":
        # supervisord killed hard: `up` still stops what it left behind (its session).
        os.kill(members[0].pid, signal.SIGKILL)
        assert stack.proc.wait(timeout=60 * timeout_factor()) == 1
        assert stack.stop() == 1  # already exited: this only collects the rest of its output
        assert "supervisord exited with code -9" in "".join(stack.output)
    else:
        assert stack.stop() == 0
    assert all_gone(members), "stop returned before every process of the stack was gone"
    assert "stopped: " in "".join(stack.output)
    assert not port_in_use("127.0.0.1", stack.port)


async def test_oversize_frame_closes_1009_and_foreign_origin_is_refused(start_stack: Any) -> None:
    stack: RunningStack = start_stack("--workers", "1", "--max-message-bytes", "1000")
    url = f"{stack.ws_url}/ws/broadcast/limits/"
    async with connect(url, open_timeout=WAIT) as client:
        await client.send("x" * 1001)
        with pytest.raises(Exception) as closed:
            await asyncio.wait_for(client.recv(), WAIT)
        assert getattr(closed.value, "rcvd", None) is not None
        assert closed.value.rcvd.code == 1009  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="HTTP 403"):
        await connect(url, origin="http://evil.example", open_timeout=WAIT)  # type: ignore[arg-type]
    same_origin = f"http://127.0.0.1:{stack.port}"
    async with connect(url, origin=same_origin, open_timeout=WAIT) as ok:  # type: ignore[arg-type]
        await _assert_everyone_receives([ok], "same origin works")
