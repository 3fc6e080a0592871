"""One client that never reads, among 200 in a room: it is dropped, the others do not suffer.

A real uvicorn worker serving the example (``/ws/broadcast/``, our consumer, our layer on a real
Redis) and 200 ``websockets`` clients in this process. One sender broadcasts 60 frames of 60 KB at
6/s (3.6 MB per client); every client records each frame's latency. Run A: 200 clients that
read. Run B: 199 that read and one raw TCP client that completes the handshake with a 4 KB
receive buffer and never reads again. With the outgoing queue bounded at 256 KiB, B's stalled
client is closed (the worker logs "closing with 1013"; 1013 is counted there) and the
p99 latency of the others stays within 2x of run A's.

About 20 s on this machine, most of it the 2 x 2 s of sending and the connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from channels_scale.net import free_port, timeout_factor, wait_until

CLIENTS = 200
FRAMES = 60
RATE = 6.0  # frames per second: 72 MB/s through the worker, below this machine's saturation
# Big frames: the kernel buffers ~3 MB for a stalled loopback peer (send buffer autotuning)
# before uvicorn's transport pauses and our queue starts to fill, so the stalled client must be
# sent more than that; with 60 KB frames that is ~50 frames, not 100,000 deliveries.
PAD = "x" * 60_000
OUTGOING_BOUND = 262_144


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def start_worker(
    env: dict[str, str], redis_url: str, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    worker_env = {
        **env,
        "CHANNELS_SCALE_REDIS_URL": redis_url,
        "CHANNELS_SCALE_MAX_OUTGOING_BYTES": str(OUTGOING_BOUND),
        "LOG_LEVEL": "INFO",
    }
    args = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port),
            "--ws", "websockets-sansio", "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(args, env=worker_env, stdout=out, stderr=subprocess.STDOUT)
    if not wait_until(lambda: port_open(port), 60):
        proc.kill()
        raise AssertionError(f"the worker did not listen: {log.read_text()[-2000:]}")
    return proc, port


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10 * timeout_factor())
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stalled_client(port: int, path: str) -> socket.socket:
    """A websocket client that completes the handshake, then never reads (4 KB receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5 * timeout_factor())
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: read nothing past the handshake
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


async def reader(
    ws: ClientConnection, latencies: list[float], ready: asyncio.Event, done: asyncio.Event
) -> None:
    async for text in ws:
        seq, sent, _ = str(text).split(" ", 2)
        if seq == "probe":  # the room reaches this client: measuring may start
            ready.set()
            continue
        latencies.append(time.perf_counter() - float(sent))
        if int(seq) == FRAMES - 1:
            break
    if len(latencies) == FRAMES:
        done.set()


async def until_all_ready(sender: ClientConnection, ready: list[asyncio.Event]) -> None:
    """Probe the room until every reader received a probe (every group_add has taken effect)."""
    deadline = time.monotonic() + 10 * timeout_factor()
    while not all(event.is_set() for event in ready):
        assert time.monotonic() < deadline, "the room never reached every client"
        await sender.send(f"probe 0 {PAD[:10]}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 0.2)


async def one_run(port: int, stalled: bool) -> list[float]:
    """p50/p99 inputs: the latency of every frame at every reading client, in seconds."""
    path = f"/ws/broadcast/slow-{uuid.uuid4().hex[:8]}/"
    url = f"ws://127.0.0.1:{port}{path}"
    readers = CLIENTS - 1 if stalled else CLIENTS
    clients = [await connect(url, max_size=None) for _ in range(readers)]
    stall = await asyncio.to_thread(stalled_client, port, path) if stalled else None
    latencies: list[list[float]] = [[] for _ in clients]
    ready = [asyncio.Event() for _ in clients]
    done = [asyncio.Event() for _ in clients]
    tasks = [
        asyncio.create_task(reader(*args))
        for args in zip(clients, latencies, ready, done, strict=True)
    ]
    sender = clients[0]
    await until_all_ready(sender, ready)
    for seq in range(FRAMES):
        await sender.send(f"{seq} {time.perf_counter():.6f} {PAD}")
        await asyncio.sleep(1 / RATE)
    await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in done)), 30 * timeout_factor())
    for task in tasks:
        task.cancel()
    for ws in clients:
        await ws.close()
    if stall is not None:
        # Not read until EOF: through its 4 KB window the ~3 MB the kernel holds for it take
        # ~10 s to drain. The worker's log says whether it was closed (asserted by the caller).
        stall.close()
    return sorted(x for lat in latencies for x in lat)


def p99(values: list[float]) -> float:
    return values[int(len(values) * 0.99)]


async def test_a_stalled_reader_is_closed_and_the_others_keep_their_p99(
    example_env: dict[str, str], shared_redis: Any, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    proc, port = start_worker(example_env, shared_redis.url, log)
    try:
        without = await one_run(port, stalled=False)
        assert "closing with 1013" not in log.read_text()
        with_stalled = await one_run(port, stalled=True)
    finally:
        stop_worker(proc)
    assert len(without) == CLIENTS * FRAMES
    assert len(with_stalled) == (CLIENTS - 1) * FRAMES
    output = log.read_text()
    assert "closing with 1013" in output, output[-2000:]
    assert "Traceback" not in output, output[-4000:]
    a, b = p99(without), p99(with_stalled)
    print(f"p99 without a stalled reader {a * 1000:.1f} ms, with one {b * 1000:.1f} ms")
    # 2x, with a 10 ms floor: below that a shared 2-core machine's scheduling noise dominates.
    assert b <= 2 * max(a, 0.010), (a, b)
