"""The layer contract, run against Channels' in-memory layer (the reference) and ours on Redis."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull

from tests.layer.conftest import LayerFactory, LayerPair, scaled, wait_for_value


async def recv(layer: Any, channel: str, within: float = 5) -> dict[str, Any]:
    async with asyncio.timeout(scaled(within)):
        message: dict[str, Any] = await layer.receive(channel)
        return message


async def nothing_on(layer: Any, channel: str, within: float = 0.3) -> bool:
    """True when no message arrives on ``channel`` within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            await layer.receive(channel)
    except TimeoutError:
        return True
    return False


async def test_send_receive_normal_channel(layer: Any) -> None:
    await layer.send("test-channel-1", {"type": "test.message", "text": "Ahoy-hoy!"})
    assert await recv(layer, "test-channel-1") == {"type": "test.message", "text": "Ahoy-hoy!"}


async def test_messages_keep_sender_order(layer: Any) -> None:
    channel = await layer.new_channel()
    for i in range(20):
        await layer.send(channel, {"type": "t", "n": i})
    assert [(await recv(layer, channel))["n"] for _ in range(20)] == list(range(20))
    for i in range(5):
        await layer.send("queue-order", {"type": "t", "n": i})
    assert [(await recv(layer, "queue-order"))["n"] for _ in range(5)] == list(range(5))


async def test_new_channel_names(layer: Any) -> None:
    a = await layer.new_channel()
    b = await layer.new_channel(prefix="other.")
    assert a != b
    assert "!" in a and a.startswith("specific.")
    assert b.startswith("other.")
    layer.require_valid_channel_name(a)
    await layer.send(b, {"type": "hello"})
    assert await recv(layer, b) == {"type": "hello"}


async def test_groups(layer: Any) -> None:
    one, two, three = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("test-group", one)
    await layer.group_add("test-group", two)
    await layer.group_add("test-group", three)
    await layer.group_discard("test-group", two)
    await layer.group_send("test-group", {"type": "message.1"})
    assert await recv(layer, one) == {"type": "message.1"}
    assert await recv(layer, three) == {"type": "message.1"}
    assert await nothing_on(layer, two)


async def test_group_with_a_normal_channel(layer: Any) -> None:
    await layer.group_add("gworkers", "worker-queue")
    await layer.group_send("gworkers", {"type": "job"})
    assert await recv(layer, "worker-queue") == {"type": "job"}
    await layer.group_discard("gworkers", "worker-queue")
    await layer.group_send("gworkers", {"type": "job2"})
    assert await nothing_on(layer, "worker-queue")


async def test_group_send_to_nobody_and_discard_unknown(layer: Any) -> None:
    await layer.group_send("empty-group", {"type": "nobody"})
    channel = await layer.new_channel()
    await layer.group_discard("never-joined", channel)


async def test_group_add_twice_delivers_once(layer: Any) -> None:
    channel = await layer.new_channel()
    await layer.group_add("twice", channel)
    await layer.group_add("twice", channel)
    await layer.group_send("twice", {"type": "once"})
    assert await recv(layer, channel) == {"type": "once"}
    assert await nothing_on(layer, channel)


async def test_capacity_normal_channel(layer_factory: LayerFactory) -> None:
    layer = layer_factory(capacity=3)
    for i in range(3):
        await layer.send("cap-queue", {"type": "t", "n": i})
    with pytest.raises(ChannelFull):
        await layer.send("cap-queue", {"type": "t", "n": 3})
    assert (await recv(layer, "cap-queue"))["n"] == 0


async def test_capacity_process_channel(layer_factory: LayerFactory) -> None:
    layer = layer_factory(capacity=2)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "t"})
    await layer.send(channel, {"type": "t"})
    if isinstance(layer, LayerPair):
        # a channel of another process: the sender cannot know, the receiver applies the
        # overflow policy (drop-oldest) and counts the drop (docs/layer.md, "Full")
        await layer.send(channel, {"type": "t", "n": "last"})
        await wait_for_value(lambda: layer.there.stats()["dropped_overflow"] == 1)
        assert (await recv(layer, channel)) == {"type": "t"}
        assert (await recv(layer, channel)) == {"type": "t", "n": "last"}
        return
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "t"})


async def test_channel_capacity_patterns(layer_factory: LayerFactory) -> None:
    layer = layer_factory(capacity=100, channel_capacity={"small-*": 1, re.compile("^re-"): 2})
    assert layer.get_capacity("small-x") == 1
    assert layer.get_capacity("re-x") == 2
    assert layer.get_capacity("other") == 100
    await layer.send("small-x", {"type": "t"})
    with pytest.raises(ChannelFull):
        await layer.send("small-x", {"type": "t"})


async def test_group_send_ignores_full_members(layer_factory: LayerFactory) -> None:
    layer = layer_factory(capacity=1)
    channel = await layer.new_channel()
    await layer.group_add("full-group", channel)
    await layer.group_send("full-group", {"type": "t", "n": 1})
    await layer.group_send("full-group", {"type": "t", "n": 2})  # no exception
    assert (await recv(layer, channel))["type"] == "t"


async def test_message_expiry(layer_factory: LayerFactory) -> None:
    layer = layer_factory(expiry=1)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "old"})
    await layer.send("expiring-queue", {"type": "old"})
    await asyncio.sleep(1.2)  # the behaviour under test is time itself
    await layer.send(channel, {"type": "new"})
    assert await recv(layer, channel) == {"type": "new"}
    assert await nothing_on(layer, "expiring-queue")


async def test_group_expiry(layer_factory: LayerFactory) -> None:
    layer = layer_factory(group_expiry=1)
    channel = await layer.new_channel()
    await layer.group_add("short-group", channel)
    await asyncio.sleep(2.1)  # InMemory compares whole seconds
    await layer.group_send("short-group", {"type": "late"})
    assert await nothing_on(layer, channel)


@pytest.mark.parametrize("name", ["", "a" * 100, "bad name", "über", 3, "a!b!c"])
async def test_invalid_channel_names(layer: Any, name: Any) -> None:
    with pytest.raises(TypeError):
        await layer.send(name, {"type": "t"})


@pytest.mark.parametrize("name", ["", "a" * 100, "bad name", "g!x", None])
async def test_invalid_group_names(layer: Any, name: Any) -> None:
    channel = await layer.new_channel()
    with pytest.raises(TypeError):
        await layer.group_add(name, channel)
    with pytest.raises(TypeError):
        await layer.group_send(name, {"type": "t"})


async def test_message_must_be_a_dict(layer: Any) -> None:
    with pytest.raises((TypeError, AssertionError)):  # the reference uses assert
        await layer.send("some-channel", ["not", "a", "dict"])


async def test_flush(layer: Any) -> None:
    channel = await layer.new_channel()
    await layer.group_add("flush-group", channel)
    await layer.send("flush-queue", {"type": "t"})
    await layer.flush()
    await layer.group_send("flush-group", {"type": "after"})
    assert await nothing_on(layer, channel)
    assert await nothing_on(layer, "flush-queue")


async def test_cancelled_receive_loses_nothing(layer: Any) -> None:
    channel = await layer.new_channel()
    for _ in range(20):
        task = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    await layer.send(channel, {"type": "kept"})
    waiting.cancel()  # woken but cancelled before it returned: the message must stay
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await recv(layer, channel) == {"type": "kept"}


async def test_two_receivers_one_message_each(layer: Any) -> None:
    channel = await layer.new_channel()
    tasks = [asyncio.ensure_future(recv(layer, channel)) for _ in range(2)]
    await asyncio.sleep(0)
    await layer.send(channel, {"type": "t", "n": 1})
    await layer.send(channel, {"type": "t", "n": 2})
    results = await asyncio.gather(*tasks)
    assert sorted(r["n"] for r in results) == [1, 2]


@pytest.mark.parametrize("factory", ["redis_layer_factory", "ours_memory_layer_factory"])
def test_async_to_sync_from_threads(request: pytest.FixtureRequest, factory: str) -> None:
    """The layer used from several event loops: sync code in threads, as Django views do.

    Ours only (both brokers): the reference (Channels' in-memory layer) keeps its queues on one
    event loop, so it does not offer this.
    """
    layer = request.getfixturevalue(factory)()
    errors: list[BaseException] = []
    received: list[dict[str, Any]] = []

    @async_to_sync
    async def consumer_side(ready: threading.Event, go: threading.Event) -> None:
        channel = await layer.new_channel()
        await layer.group_add("threads", channel)
        ready.set()
        received.append(await recv(layer, channel, 10))
        received.append(await recv(layer, channel, 10))

    ready, go = threading.Event(), threading.Event()

    def run() -> None:
        try:
            consumer_side(ready, go)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(scaled(10))
    async_to_sync(layer.group_send)("threads", {"type": "from.sync", "n": 1})
    async_to_sync(layer.group_send)("threads", {"type": "from.sync", "n": 2})
    thread.join(scaled(15))
    assert not thread.is_alive()
    assert not errors
    assert [m["n"] for m in received] == [1, 2]
