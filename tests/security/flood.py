"""The fragment flood of issue 13, with canary clients, as a function and as a command.

One client opens ``/ws/broadcast/<room>/``, sends a text frame with FIN=0 and then empty
continuation frames as fast as it can write them for ``seconds``, reconnecting whenever the server
closes it (an attacker would). Meanwhile canary clients on the same worker broadcast timestamps to
each other; their delay is what the flood costs everyone else. The worker's CPU time comes from
``/proc/<pid>/stat`` before and after.

Measure a running stack (``channels-scale up --workers 1 --port 8000``)::

    uv run --frozen python -m tests.security.flood --port 8000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect

from channels_scale.stack.health import http_status
from tests.security.rawws import CONT, PING, TEXT, RawSocket, frame

#: Empty continuation frames per write: 6 bytes each (header + mask), 24 KiB per write.
BATCH = 4096


@dataclass
class FloodResult:
    frames: int = 0
    connections: int = 0
    close_codes: Counter[int | None] = field(default_factory=Counter)


@dataclass
class CanaryResult:
    sent: int = 0
    received: int = 0
    expected: int = 0
    delays: list[float] = field(default_factory=list)

    @property
    def loss(self) -> int:
        return self.expected - self.received

    def percentile(self, share: float) -> float:
        if not self.delays:
            return float("nan")
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (fields 14 and 15 of ``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fragment_flood(
    port: int, path: str, seconds: float, kind: str = "fragments", reconnect: bool = True
) -> FloodResult:
    """Flood ``path`` for ``seconds``; one connection after another while the server closes them.

    ``kind``: ``fragments`` (a text frame with FIN=0, then empty continuation frames) or
    ``pings`` (empty pings). Without ``reconnect``, one connection only.
    """
    result = FloodResult()
    batch = (frame(CONT, fin=False) if kind == "fragments" else frame(PING)) * BATCH
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        sock = await RawSocket.open(port, path)
        result.connections += 1
        if sock.answer.status != 101:
            result.close_codes[None] += 1
            await sock.close()
            continue
        alive = await sock.send(frame(TEXT, b"x", fin=False) if kind == "fragments" else b"")
        while alive and loop.time() < deadline:
            alive = await sock.send(batch)
            if alive:
                result.frames += BATCH
                answer = await sock.read_available()
                alive = answer.close_code is None
        answer = await sock.read_until_closed(0.5)
        result.close_codes[answer.close_code] += 1
        await sock.close()
        if not reconnect:
            break
    return result


async def canaries(
    port: int,
    room: str,
    count: int,
    until: asyncio.Event,
    interval: float = 0.02,
    ready: asyncio.Event | None = None,
) -> CanaryResult:
    """``count`` clients in one room; the first broadcasts a timestamp every ``interval``.

    ``ready`` is set once every client is connected; the run ends when ``until`` is set.
    """
    url = f"ws://127.0.0.1:{port}/ws/broadcast/{room}/"
    clients = [await connect(url, open_timeout=10) for _ in range(count)]
    if ready is not None:
        ready.set()
    result = CanaryResult()

    async def listen(client: ClientConnection) -> None:
        async for text in client:
            sent_at = json.loads(text)["t"]
            result.received += 1
            result.delays.append(time.monotonic() - sent_at)

    listeners = [asyncio.create_task(listen(c)) for c in clients]
    while not until.is_set():
        await clients[0].send(json.dumps({"t": time.monotonic()}))
        result.sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), interval)
    result.expected = result.sent * count
    # Frames in flight when the run stops still count: wait for them, boundedly.
    settle = time.monotonic() + 5
    while result.received < result.expected and time.monotonic() < settle:  # noqa: ASYNC110 -- counted by the listeners
        await asyncio.sleep(0.05)
    for task in listeners:
        task.cancel()
    for client in clients:
        await client.close()
    return result


async def measure(
    port: int,
    seconds: float,
    canary_count: int = 20,
    kind: str = "fragments",
    reconnect: bool = True,
) -> dict[str, object]:
    """Run the flood and the canaries against the stack on ``port`` (one worker)."""
    pid = worker_pid(port)
    before = cpu_seconds(pid)
    stop = asyncio.Event()
    ready = asyncio.Event()
    canary_task = asyncio.create_task(canaries(port, "canary", canary_count, stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    started = time.monotonic()
    flood = await fragment_flood(port, "/ws/broadcast/flood/", seconds, kind, reconnect)
    elapsed = time.monotonic() - started
    stop.set()
    canary = await canary_task
    return {
        "flood_seconds": round(elapsed, 2),
        "flood_frames": flood.frames,
        "flood_connections": flood.connections,
        "close_codes": dict(flood.close_codes),
        "worker_cpu_seconds": round(cpu_seconds(pid) - before, 2),
        "same_worker": worker_pid(port) == pid,
        "canary_loss": canary.loss,
        "canary_p50_ms": round(canary.percentile(0.5) * 1000, 1),
        "canary_p99_ms": round(canary.percentile(0.99) * 1000, 1),
        "canary_max_ms": round(max(canary.delays, default=float("nan")) * 1000, 1),
    }


def worker_pid(port: int) -> int:
    """The pid of the worker behind the balancer (the stack has one worker)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return int(json.loads(raw.partition(b"\r\n\r\n")[2])["pid"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--canaries", type=int, default=20)
    parser.add_argument("--kind", choices=("fragments", "pings"), default="fragments")
    parser.add_argument("--once", action="store_true", help="one flood connection, no reconnect")
    args = parser.parse_args()
    assert http_status("127.0.0.1", args.port) == 200, "no stack answers /healthz on that port"
    figures = measure(args.port, args.seconds, args.canaries, args.kind, not args.once)
    print(json.dumps(asyncio.run(figures), indent=2))


if __name__ == "__main__":
    main()
