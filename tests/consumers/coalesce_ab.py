"""Experiment (not a test): server CPU per delivery of pre-framed writes, coalesced or not.

    python -m tests.consumers.coalesce_ab [connections] [turns/s] [seconds] [frames per turn,...]
    python -m tests.consumers.coalesce_ab 500 20 4 1,3,6

A bare uvicorn server with our protocol class (no Django, no Redis) keeps each connection's
pre-framed ``write``; every 1/turns s, one loop turn writes K frames to every connection. One
client process reads them (``websockets``). For each K, three rounds alternate coalescing off
(each frame written at once, the behaviour before) and on, in the same process, and print the
server's and the client's CPU per delivery from /proc: on a shared machine only the ratio within
a run means something. The point: a worker behind its load gets several frames per connection
and turn (several messages in one Redis read), and then one write per connection and turn is
what the worker, the load balancer and the client pay.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from typing import Any

import uvicorn
import uvloop
from websockets.asyncio.client import connect

from channels_scale.consumers.direct import PREFRAMED, serialize_frame
from channels_scale.net import free_port
from channels_scale.wsprotocol import BoundedWebSocketProtocol

ROUNDS = 3


class Switchable(BoundedWebSocketProtocol):
    """Coalescing on (our class) or off (every frame written at once, the former code)."""

    coalesce = True

    def write_preframed(self, frame: bytes) -> bool:
        if self.coalesce:
            return super().write_preframed(frame)
        if not self.preframed_writable():
            return False
        self.transport.write(frame)
        return True


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_all(port: int, count: int, ready: Any) -> None:
    async def one() -> None:
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, max_queue=None) as ws:
            async for _ in ws:
                pass

    async def main() -> None:
        tasks = []
        for _ in range(count):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(0.002)
        ready.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    uvloop.run(main())


async def run(count: int, turns: float, seconds: float, per_turn: list[int]) -> None:
    writers: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        writers.append(scope["extensions"][PREFRAMED]["write"])
        while (await receive())["type"] != "websocket.disconnect":
            pass

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws=Switchable, ws_per_message_deflate=False,
        lifespan="off", log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 -- uvicorn sets a flag, no event
        await asyncio.sleep(0.05)
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    clients = context.Process(target=read_all, args=(port, count, ready))
    clients.start()
    ready.wait(60)
    while len(writers) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    frame = serialize_frame(0x81, b"x" * 100)
    me = os.getpid()
    for k in per_turn:
        means: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(ROUNDS):
            for coalesce in (False, True):
                Switchable.coalesce = coalesce
                await asyncio.sleep(0.5)
                server0, client0 = cpu_seconds(me), cpu_seconds(clients.pid or 0)
                start = due = time.monotonic()
                sent = 0
                while time.monotonic() - start < seconds:
                    for _ in range(k):
                        for write in writers:
                            sent += write(frame)
                    due += 1 / turns
                    await asyncio.sleep(max(due - time.monotonic(), 0))
                await asyncio.sleep(0.3)
                means[coalesce].append(
                    (
                        (cpu_seconds(me) - server0) * 1e6 / sent,
                        (cpu_seconds(clients.pid or 0) - client0) * 1e6 / sent,
                    )
                )
        for coalesce, values in means.items():
            server_us = sum(v[0] for v in values) / len(values)
            client_us = sum(v[1] for v in values) / len(values)
            print(
                f"{k} frames/turn, coalescing {'on ' if coalesce else 'off'}: server "
                f"{server_us:.2f} µs, client {client_us:.2f} µs per delivery",
                flush=True,
            )
    clients.terminate()
    clients.join(10)
    server.should_exit = True
    await serving


if __name__ == "__main__":
    args = sys.argv[1:]
    uvloop.run(
        run(
            int(args[0]) if args else 500,
            float(args[1]) if len(args) > 1 else 20,
            float(args[2]) if len(args) > 2 else 4,
            [int(k) for k in args[3].split(",")] if len(args) > 3 else [1, 3, 6],
        )
    )
