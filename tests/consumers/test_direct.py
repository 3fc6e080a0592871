"""The direct path (channels_scale.consumers.direct) over a real uvicorn and real clients.

Each test serves one consumer class with our uvicorn protocol class in this event loop, our layer
on the shared redis-server, and ``websockets`` clients; a second layer instance (another process'
view of the room) publishes, so frames come through Redis and the layer's reader, as in a worker.
``delivered_direct`` in the serving layer's stats says which path each delivery took: every test
checks it, so none passes by taking the normal path only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from channels.layers import get_channel_layer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from channels_scale import consumers
from channels_scale.consumers.direct import preframed, sink_writer
from channels_scale.layer import RedisChannelLayer
from channels_scale.net import free_port
from channels_scale.wsprotocol import BoundedWebSocketProtocol
from tests.consumers.conftest import wait
from tests.example.test_slow_client import stalled_client

pytestmark = pytest.mark.django_db  # DB hygiene's thread, as in test_ours.py

ROOM = "room"


class Fast(consumers.AsyncWebsocketConsumer):
    """Joins the room; group frames take the direct path when they may."""

    groups = [ROOM]
    gate: asyncio.Event | None = None
    channel = ""  # the last connected consumer's channel

    async def connect(self) -> None:
        type(self).channel = self.channel_name
        await self.accept()

    async def hold(self, event: dict[str, Any]) -> None:
        """A handler that keeps the consumer busy until the test opens the gate."""
        assert self.gate is not None
        await self.gate.wait()
        await self.send(text_data="held")


class Closing(Fast):
    """Closes with 4000 on a ``bye`` message."""

    async def bye(self, event: dict[str, Any]) -> None:
        await self.close(4000)


class Dispatching(Fast):
    """Overrides dispatch: every message must go through it (no direct path)."""

    dispatched = 0

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "client.frame":
            type(self).dispatched += 1
        await super().dispatch(message)


class Upper(Fast):
    """Overrides client_frame (and not frame_types): its own handler must run."""

    async def client_frame(self, event: dict[str, Any]) -> None:
        text = event["text"]
        await self.send(text_data=text if text.startswith("probe") else text.upper())


class Echoing(Fast):
    """A room's sender: publishes each frame to the room, then acknowledges it."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        assert text_data is not None
        await self.channel_layer.group_send(ROOM, consumers.frame_event(text_data))
        await self.send(text_data="ack " + text_data)


class Burst(Fast):
    """On ``burst``: three pre-framed frames in one loop turn, then its own send, then (asked)
    two more and a close -- the order a client must see whatever the coalescing."""

    async def burst(self, event: dict[str, Any]) -> None:
        write = sink_writer(self.scope)
        assert write is not None
        for text in ("p0", "p1", "p2"):
            frame = preframed({"type": "client.frame", "text": text})
            assert frame is not None and write(frame)
        await self.send(text_data="after")
        if event.get("close"):
            for text in ("q0", "q1"):
                frame = preframed({"type": "client.frame", "text": text})
                assert frame is not None and write(frame)
            await self.close(4000)


class Counting(BoundedWebSocketProtocol):
    """Records how many pre-framed frames each flush wrote at once."""

    flushes: list[int] = []

    def flush_preframed(self) -> None:
        pending = self.preframed
        if pending is not None:
            type(self).flushes.append(1 if isinstance(pending, bytes) else len(pending))
        super().flush_preframed()


class Server:
    """uvicorn with BoundedWebSocketProtocol serving ``app`` on a free port, in this loop."""

    def __init__(
        self, app: Any, deflate: bool, protocol: type[BoundedWebSocketProtocol] | None = None
    ) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, ws=protocol or BoundedWebSocketProtocol,
            ws_per_message_deflate=deflate, lifespan="off", log_level="warning",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Server:
        self.task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(wait(10)):
            while not self.server.started:  # noqa: ASYNC110 -- uvicorn sets a flag, no event
                await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await asyncio.wait_for(self.task, wait(10))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"


@pytest.fixture
async def layers(
    request: Any, settings: Any, shared_redis: Any
) -> AsyncIterator[tuple[Any, RedisChannelLayer]]:
    """(the served consumers' layer, a publisher's layer) on one prefix of the shared Redis;
    channel capacity 1000, or the test's indirect parameter."""
    prefix = f"direct{uuid.uuid4().hex[:8]}"
    capacity = getattr(request, "param", 1000)
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_scale.layer.RedisChannelLayer",
            "CONFIG": {"hosts": [shared_redis.url], "prefix": prefix, "capacity": capacity},
        }
    }
    settings.WEBSOCKET_MAX_OUTGOING_BYTES = 256 * 1024
    served = get_channel_layer()
    publisher = RedisChannelLayer(hosts=[shared_redis.url], prefix=prefix)
    yield served, publisher
    await publisher.close()
    await served.close()


async def joined(publisher: RedisChannelLayer, clients: list[ClientConnection]) -> None:
    """Probe the room until every client got a probe: every group_add took effect everywhere."""
    async with asyncio.timeout(wait(10)):
        for round in range(10**6):
            # Read up to this round's probe: earlier probes are consumed on the way, and none is
            # left behind the last one.
            probe = f"probe {round}"
            await publisher.group_send(ROOM, {"type": "client.frame", "text": probe})
            try:
                async with asyncio.timeout(0.3):
                    for ws in clients:
                        while await ws.recv() != probe:
                            pass
                return
            except TimeoutError:
                continue


def frames(count: int) -> list[str | bytes]:
    """Text and binary frames of every header size: 7-bit, 16-bit and 64-bit lengths."""
    sizes = [0, 5, 125, 126, 300, 65535, 65536, 70000]
    out: list[str | bytes] = []
    for i in range(count):
        size = sizes[i % len(sizes)]
        out.append(f"{i:04d}é" + "x" * size if i % 3 else bytes([i % 256]) * (size + 1))
    return out


async def broadcast(publisher: RedisChannelLayer, items: list[str | bytes]) -> None:
    for item in items:
        key = "text" if isinstance(item, str) else "bytes"
        await publisher.group_send(ROOM, {"type": "client.frame", key: item})


async def received(ws: ClientConnection, count: int) -> list[str | bytes]:
    async with asyncio.timeout(wait(20)):
        return [await ws.recv() for _ in range(count)]


async def run_room(
    app: Any, layers: Any, clients: int, items: list[str | bytes], compress: list[bool]
) -> tuple[list[list[str | bytes]], int]:
    """Serve ``app``, connect ``clients``, broadcast ``items``: (what each got, direct count)."""
    served, publisher = layers
    async with Server(app, deflate=True) as server:
        conns = [
            await connect(server.url, compression="deflate" if compress[i] else None, max_size=None)
            for i in range(clients)
        ]
        await joined(publisher, conns)
        before = served.stats()["delivered_direct"]
        await broadcast(publisher, items)
        got = [await received(ws, len(items)) for ws in conns]
        direct = served.stats()["delivered_direct"] - before
        for ws in conns:
            await ws.close()
    return got, direct


async def test_direct_path_sends_what_the_normal_path_sends(layers: Any) -> None:
    items = frames(24)
    fast, fast_direct = await run_room(Fast.as_asgi(), layers, 8, items, [False] * 8)
    Dispatching.dispatched = 0
    slow, slow_direct = await run_room(Dispatching.as_asgi(), layers, 8, items, [False] * 8)
    assert fast == slow == [items] * 8
    assert fast_direct >= len(items) * 8 * 0.9  # a delivery may meet a busy consumer
    # The overriding class went through dispatch for every frame, probes included.
    assert slow_direct == 0
    assert Dispatching.dispatched >= len(items) * 8


async def test_overriding_client_frame_runs_the_handler(layers: Any) -> None:
    got, direct = await run_room(Upper.as_asgi(), layers, 2, ["abc", "déf"], [False, False])
    assert got == [["ABC", "DÉF"]] * 2
    assert direct == 0


async def test_compression_negotiated_takes_the_normal_path(layers: Any) -> None:
    items = frames(16)
    got, direct = await run_room(Fast.as_asgi(), layers, 2, items, [True, False])
    assert got == [items, items]
    # Only the uncompressed connection (the second) was written to directly.
    assert 0.9 * len(items) <= direct <= len(items)


async def test_a_busy_consumer_gets_the_broadcast_after_what_it_holds(layers: Any) -> None:
    served, publisher = layers
    Fast.gate = asyncio.Event()
    async with Server(Fast.as_asgi(), deflate=False) as server:
        ws = await connect(server.url, compression=None)
        await joined(publisher, [ws])
        await publisher.group_send(ROOM, {"type": "hold"})  # the handler now waits
        await broadcast(publisher, ["a", "b", "c"])
        # The three frames are buffered behind the running handler, not written around it.
        async with asyncio.timeout(wait(5)):
            while served.channel_info(Fast.channel)["buffered"] < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        before = served.stats()["delivered_direct"]
        Fast.gate.set()
        assert await received(ws, 4) == ["held", "a", "b", "c"]
        # Once drained, the direct path resumes.
        await broadcast(publisher, ["d"])
        assert await received(ws, 1) == ["d"]
        assert served.stats()["delivered_direct"] == before + 1
        await ws.close()


async def test_nothing_is_written_after_a_close(layers: Any) -> None:
    served, publisher = layers
    async with Server(Closing.as_asgi(), deflate=False) as server:
        ws = await connect(server.url, compression=None)
        await joined(publisher, [ws])
        before = served.stats()["delivered_direct"]
        await publisher.group_send(ROOM, {"type": "bye"})
        await broadcast(publisher, ["late"] * 20)
        with pytest.raises(ConnectionClosed) as closed:
            await received(ws, 1)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        assert served.stats()["delivered_direct"] == before


async def test_frames_of_one_loop_turn_go_out_in_one_write_in_order(layers: Any) -> None:
    _, publisher = layers
    Counting.flushes = []
    async with Server(Burst.as_asgi(), deflate=False, protocol=Counting) as server:
        ws = await connect(server.url, compression=None)
        await joined(publisher, [ws])
        # Several group frames in one Redis read are fanned out in one turn: one write each.
        Counting.flushes = []
        await publisher.group_send(ROOM, {"type": "burst"})
        assert await received(ws, 4) == ["p0", "p1", "p2", "after"]
        # The handler's turn wrote its first frame at once and held the other three (its own
        # send takes the pre-framed write too when nothing is queued: OutgoingQueue.write_now),
        # then wrote those in one go.
        assert 3 in Counting.flushes
        # Frames pending when the application closes (through uvicorn's send) go out before
        # the close frame.
        await publisher.group_send(ROOM, {"type": "burst", "close": True})
        assert await received(ws, 6) == ["p0", "p1", "p2", "after", "q0", "q1"]
        with pytest.raises(ConnectionClosed) as closed:
            await received(ws, 1)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


@pytest.mark.parametrize("layers", [4], indirect=True)
async def test_after_an_overflow_without_notices_delivery_goes_on(layers: Any) -> None:
    """A full buffer drops (drop-oldest, no overflow notice configured): later messages still
    reach the consumer, whose layer task runs only while messages wait."""
    served, publisher = layers
    Fast.gate = asyncio.Event()
    async with Server(Fast.as_asgi(), deflate=False) as server:
        ws = await connect(server.url, compression=None)
        await joined(publisher, [ws])
        await publisher.group_send(ROOM, {"type": "hold"})
        await broadcast(publisher, [f"m{i}" for i in range(10)])  # 6 of them are dropped
        async with asyncio.timeout(wait(5)):
            while served.channel_info(Fast.channel)["dropped"] < 6:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        Fast.gate.set()
        assert await received(ws, 5) == ["held", "m6", "m7", "m8", "m9"]
        await broadcast(publisher, ["after"])
        assert await received(ws, 1) == ["after"]
        await ws.close()


async def test_a_stalled_reader_is_closed_1013_and_the_others_get_everything(
    layers: Any,
) -> None:
    served, publisher = layers
    count, pad = 80, "x" * 60_000  # ~5 MB: past what the kernel buffers for a stalled peer
    before_1013 = consumers.COUNTERS["slow_client"]
    async with Server(Fast.as_asgi(), deflate=False) as server:
        readers = [await connect(server.url, compression=None, max_size=None) for _ in range(4)]
        stalled = await asyncio.to_thread(stalled_client, server.port, "/ws/")
        await joined(publisher, readers)
        start = served.stats()["delivered_direct"]
        items: list[str | bytes] = [f"{i:03d}{pad}" for i in range(count)]
        results = asyncio.gather(*(received(ws, count) for ws in readers))
        await broadcast(publisher, items)
        assert await results == [items] * 4
        async with asyncio.timeout(wait(10)):
            while consumers.COUNTERS["slow_client"] == before_1013:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        # The readers were written to directly while the stalled one queued.
        assert served.stats()["delivered_direct"] - start >= 4 * count * 0.9
        for ws in readers:
            await ws.close()
        stalled.close()


async def test_a_senders_own_echo_follows_its_handler_without_a_layer_task(layers: Any) -> None:
    """The echo of a handler's own group_send meets its consumer busy: it comes after what the
    handler sends next (one handler at a time, as in Channels), taken by the consumer's main task
    when the handler ends, with no layer task started for it."""
    _, publisher = layers
    drains = 0
    loop = asyncio.get_running_loop()

    def count_drains(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        nonlocal drains
        drains += getattr(coro, "__name__", "") == "_drain"
        return asyncio.Task(coro, loop=loop)

    async with Server(Echoing.as_asgi(), deflate=False) as server:
        sender = await connect(server.url, compression=None)
        other = await connect(server.url, compression=None)
        await joined(publisher, [sender, other])
        loop.set_task_factory(count_drains)
        try:
            for i in range(20):
                await sender.send(f"m{i}")
                assert await received(sender, 2) == [f"ack m{i}", f"m{i}"]
                assert await received(other, 1) == [f"m{i}"]
        finally:
            loop.set_task_factory(None)
        assert drains == 0
        await sender.close()
        await other.close()


class Publishing(Fast):
    """The rooms endpoint: each client frame goes to the room, sender included."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        assert text_data is not None
        await self.channel_layer.group_send(ROOM, consumers.frame_event(text_data))


async def test_every_sender_and_a_publisher_at_once_lose_nothing(layers: Any) -> None:
    """4 clients publish 300 frames each as fast as they can while another process publishes
    300: echoes left for the main task and frames queued behind them all arrive, each sender's
    in order."""
    _, publisher = layers
    count, clients = 300, 4
    async with Server(Publishing.as_asgi(), deflate=False) as server:
        conns = [await connect(server.url, compression=None) for _ in range(clients)]
        await joined(publisher, conns)

        async def send(i: int, ws: ClientConnection) -> None:
            for k in range(count):
                await ws.send(f"c{i}-{k}")
                if k % 7 == 0:
                    await asyncio.sleep(0)  # let replies and deliveries interleave

        readers = [asyncio.create_task(received(ws, count * (clients + 1))) for ws in conns]
        await asyncio.gather(
            broadcast(publisher, [f"p-{k}" for k in range(count)]),
            *(send(i, ws) for i, ws in enumerate(conns)),
        )
        for got in await asyncio.gather(*readers):
            for i in range(clients):
                assert [x for x in got if str(x).startswith(f"c{i}-")] == [
                    f"c{i}-{k}" for k in range(count)
                ]
            assert [x for x in got if str(x).startswith("p-")] == [f"p-{k}" for k in range(count)]
        for ws in conns:
            await ws.close()
