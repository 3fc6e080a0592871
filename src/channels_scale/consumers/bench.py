"""A no-I/O micro-benchmark of the per-delivery path: Channels' consumer vs ours.

``python -m channels_scale.consumers.bench`` starts ``--members`` consumers of one group in one
event loop, each with a fake ASGI ``receive`` (connect, then nothing until the end) and a fake
``send`` that only counts frames, then ``group_send``-s ``--messages`` messages and waits until
every member sent every one. No sockets, no Redis: what is measured is the consumer path plus the
layer's local fan-out. Printed per family: deliveries/s (wall) and process CPU per 1,000
deliveries (all threads: Channels' DB-hygiene hop runs in asgiref's thread).

- ``--layer inmemory``: Channels' ``InMemoryChannelLayer`` (deep-copies every message for every
  member and creates a task per member per ``group_send``: its own cost is in the figures);
- ``--layer direct``: a minimal in-process layer (one queue per channel, the same dict put in
  every member's queue), so the figures are the consumer path alone.
- ``--layer ours``: ``channels_scale.layer.RedisChannelLayer`` with its in-memory broker, and a
  scope that offers the pre-framed write (:mod:`channels_scale.consumers.direct`), so ours
  takes the direct path: members are written to from the layer's fan-out, no task wakes
  (``--no-direct``: the same without the extension, i.e. the normal path, for an A/B).
- ``--payload text``: the handler sends ``event["text"]`` (both families, same handler);
  ``--payload json``: Channels' members ``send_json(event["obj"])`` (one encode per member);
  ours ``group_send_json`` once and members send the pre-encoded ``client.frame``.
- ``--batch B``: ``group_send`` calls per event-loop turn (default 1: every message wakes
  every member, as arrivals from Redis do; larger batches let a member drain several at once);
- ``--profile``: cProfile of the fan-out (the event loop's thread), top functions by own time.
- ``--idle N``: tracemalloc bytes per idle connected consumer (task, consumer, layer state).
- ``--inbound``: the rooms shape instead: each message is a frame *from a client* (member
  ``i % members``), whose consumer ``group_send``-s it as a frame event to the room (the
  ``/ws/broadcast/<room>/`` endpoint's consumer); every member, the sender included, gets it.
  Measured: the consumer's receive path, ``group_send`` and the fan-out, echo to the sender
  included (``--family ours``; Channels' family publishes ``broadcast.message``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

FAMILIES = ("channels", "ours")


def configure_django(layer: str, capacity: int) -> None:
    """Minimal settings (an in-memory SQLite, so DB hygiene has a database to look at)."""
    import django
    from django.conf import settings

    backend = {
        "inmemory": "channels.layers.InMemoryChannelLayer",
        "direct": "channels_scale.consumers.bench.DirectLayer",
        "ours": "channels_scale.layer.RedisChannelLayer",
    }[layer]
    config: dict[str, Any] = {"capacity": capacity}
    if layer == "ours":
        config["broker"] = "memory"
    channel_layers = {"default": {"BACKEND": backend, "CONFIG": config}}
    if not settings.configured:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            INSTALLED_APPS=[],
            CHANNEL_LAYERS=channel_layers,
            USE_TZ=True,
        )
        django.setup()
    else:
        settings.CHANNEL_LAYERS = channel_layers
    from channels.layers import channel_layers as manager

    manager.backends = {}


class DirectLayer:
    """The cheapest possible in-process layer: for isolating the consumer path (bench only)."""

    extensions = ["groups"]

    def __init__(self, capacity: int = 100, **kwargs: Any) -> None:
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.groups: dict[str, set[str]] = {}
        self.counter = 0

    async def new_channel(self, prefix: str = "specific.") -> str:
        self.counter += 1
        name = f"{prefix}direct!{self.counter}"
        self.queues[name] = asyncio.Queue()
        return name

    async def receive(self, channel: str) -> dict[str, Any]:
        return await self.queues[channel].get()

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        self.queues[channel].put_nowait(message)

    async def group_add(self, group: str, channel: str) -> None:
        self.groups.setdefault(group, set()).add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.groups.get(group, set()).discard(channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        queues = self.queues
        for channel in self.groups.get(group, ()):
            queues[channel].put_nowait(message)


def consumer_class(family: str) -> type[Any]:
    """A broadcast member on Channels' base class or ours (same handlers)."""
    from channels.generic import websocket as channels_ws

    from channels_scale import consumers

    base = (
        channels_ws.AsyncJsonWebsocketConsumer
        if family == "channels"
        else consumers.AsyncJsonWebsocketConsumer
    )

    class Member(base):  # type: ignore[misc,valid-type]
        groups = ["room"]
        # ours: broadcast_message only sends the text, so it may take the direct path
        frame_types = frozenset({"client.frame", "broadcast.message"})

        async def broadcast_message(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

        async def broadcast_json(self, event: dict[str, Any]) -> None:
            await self.send_json(event["obj"])

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
        ) -> None:
            # the rooms endpoint: a client's frame goes to everyone in the room, sender included
            event = {"type": "broadcast.message", "text": text_data}
            await self.channel_layer.group_send("room", event)

    return Member


class Harness:
    """N members with fake ASGI callables; counts frames sent."""

    def __init__(
        self, family: str, members: int, direct: bool = True, inbound: bool = False
    ) -> None:
        self.app = consumer_class(family).as_asgi()
        self.direct = direct
        self.inbound = inbound
        self.members = members
        self.accepted = 0
        self.frames = 0
        self.target = 0
        self.all_accepted = asyncio.Event()
        self.all_sent = asyncio.Event()
        self.end: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tasks: list[asyncio.Task[None]] = []
        #: frames "from the client" of each member (--inbound), in the order its receive() gets them
        self.inboxes: list[asyncio.Queue[str]] = []

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            self.count_frame()
        elif kind == "websocket.accept":
            self.accepted += 1
            if self.accepted == self.members:
                self.all_accepted.set()

    def count_frame(self) -> None:
        self.frames += 1
        if self.frames == self.target:
            self.all_sent.set()

    def write(self, frame: bytes) -> bool:
        """The pre-framed write of the scope extension: counts, as ``send`` does."""
        if self.accepted < self.members:
            return False  # as a server before the handshake: the accept goes first
        self.count_frame()
        return True

    def receive_factory(self) -> Callable[[], Any]:
        connected = False
        end = self.end
        if not self.inbound:

            async def receive() -> dict[str, Any]:
                nonlocal connected
                if not connected:
                    connected = True
                    return {"type": "websocket.connect"}
                await asyncio.shield(end)
                return {"type": "websocket.disconnect", "code": 1000}

            return receive
        inbox: asyncio.Queue[str] = asyncio.Queue()  # only with --inbound: --idle counts bytes
        self.inboxes.append(inbox)

        async def receive_frames() -> dict[str, Any]:
            nonlocal connected
            if not connected:
                connected = True
                return {"type": "websocket.connect"}
            if inbox.empty():
                waiter = asyncio.ensure_future(inbox.get())
                await asyncio.wait((waiter, end), return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    waiter.cancel()
                    return {"type": "websocket.disconnect", "code": 1000}
                return {"type": "websocket.receive", "text": waiter.result()}
            return {"type": "websocket.receive", "text": inbox.get_nowait()}

        return receive_frames

    async def start(self) -> None:
        from channels_scale.consumers.direct import PREFRAMED

        scope = {
            "type": "websocket",
            "path": "/ws/",
            "headers": [],
            "query_string": b"",
            "extensions": {PREFRAMED: {"write": self.write}} if self.direct else {},
        }
        loop = asyncio.get_running_loop()
        for _ in range(self.members):
            self.tasks.append(
                loop.create_task(self.app(dict(scope), self.receive_factory(), self.send))
            )
        await asyncio.wait_for(self.all_accepted.wait(), 60)

    async def stop(self) -> None:
        self.end.set_result(None)
        await asyncio.wait_for(asyncio.gather(*self.tasks), 60)


async def fanout(
    family: str,
    members: int,
    messages: int,
    payload: str,
    profile: bool,
    batch: int = 1,
    direct: bool = True,
    inbound: bool = False,
) -> dict[str, Any]:
    from channels.layers import get_channel_layer

    from channels_scale.consumers import group_send_json

    harness = Harness(family, members, direct, inbound)
    await harness.start()
    layer = get_channel_layer()
    harness.target = members * messages
    obj = {"type": "message", "user": "alice", "text": "hello " * 8, "n": 0}
    profiler = cProfile.Profile() if profile else None
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    for i in range(messages):
        if inbound:
            harness.inboxes[i % members].put_nowait(f"message {i}")
        elif payload == "text":
            await layer.group_send("room", {"type": "broadcast.message", "text": f"message {i}"})
        elif family == "channels":
            await layer.group_send("room", {"type": "broadcast.json", "obj": {**obj, "n": i}})
        else:
            await group_send_json(layer, "room", {**obj, "n": i})
        if i % batch == batch - 1:
            # One loop turn between arrivals, as messages from Redis arrive: every member's
            # task wakes for each message (no batching in the consumer's favour).
            await asyncio.sleep(0)
    await asyncio.wait_for(harness.all_sent.wait(), 300)
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await harness.stop()
    deliveries = members * messages
    result: dict[str, Any] = {
        "family": family,
        "deliveries": deliveries,
        "per_s": deliveries / wall,
        "cpu_ms_per_1k": cpu / deliveries * 1000 * 1000,
    }
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(14)
        result["profile"] = out.getvalue()
    return result


async def idle_memory(family: str, members: int) -> float:
    """tracemalloc bytes per connected idle consumer (its task, object, layer state)."""
    warm = Harness(family, 10)  # import and cache everything first
    await warm.start()
    await warm.stop()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    harness = Harness(family, members)
    await harness.start()
    await asyncio.sleep(0.1)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    await harness.stop()
    return size / members


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m channels_scale.consumers.bench")
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--family", choices=(*FAMILIES, "both"), default="both")
    parser.add_argument("--layer", choices=("inmemory", "direct", "ours"), default="inmemory")
    parser.add_argument("--payload", choices=("text", "json"), default="text")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-direct", action="store_true", help="no pre-framed write in scope")
    parser.add_argument("--batch", type=int, default=1, help="group_send calls per loop turn")
    parser.add_argument("--idle", type=int, default=0, help="measure idle memory with N consumers")
    parser.add_argument("--inbound", action="store_true", help="frames from clients (rooms)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per family (best is printed)")
    args = parser.parse_args(argv)
    configure_django(args.layer, capacity=args.messages + 10)
    families = FAMILIES if args.family == "both" else (args.family,)

    async def run() -> None:
        for family in families:
            if args.idle:
                per = await idle_memory(family, args.idle)
                print(f"{family:9} idle: {per / 1024:.2f} KiB per consumer ({args.idle} consumers)")
                continue
            runs = [
                await fanout(
                    family,
                    args.members,
                    args.messages,
                    args.payload,
                    args.profile,
                    args.batch,
                    not args.no_direct,
                    args.inbound,
                )
                for _ in range(args.repeat)
            ]
            best = min(runs, key=lambda r: r["cpu_ms_per_1k"])
            spread = ", ".join(f"{r['cpu_ms_per_1k']:.1f}" for r in runs)
            print(
                f"{family:9} {args.layer:8} {args.payload:4} {best['deliveries']} deliveries: "
                f"{best['per_s']:,.0f}/s, {best['cpu_ms_per_1k']:.1f} ms CPU per 1,000 "
                f"(runs: {spread})"
            )
            if args.profile:
                print(best["profile"])

    if args.loop == "uvloop":
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())


if __name__ == "__main__":
    main()
