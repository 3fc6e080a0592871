"""Our layer against a real redis-server that is killed, restarted, idle or overloaded."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from channels_scale.exceptions import ChannelsScaleError, LayerUnavailable, MessageTooLarge
from channels_scale.layer import RedisChannelLayer
from channels_scale.net import free_port
from tests.layer.conftest import LayerFactory, scaled, wait_for_value

FAST = {"backoff_base": 0.02, "backoff_cap": 0.3, "health_check_interval": 1.0}


async def test_redis_killed_and_restarted_while_consumers_wait(redis_server: Any) -> None:
    consumer = RedisChannelLayer(hosts=[redis_server.url], send_timeout=0.5, **FAST)
    sender = RedisChannelLayer(hosts=[redis_server.url], send_timeout=0.5, **FAST)
    try:
        channels = [await consumer.new_channel() for _ in range(3)]
        for channel in channels:
            await consumer.group_add("room", channel)
        await sender.group_send("room", {"type": "before"})
        for channel in channels:
            async with asyncio.timeout(scaled(5)):
                assert await consumer.receive(channel) == {"type": "before"}

        waiting = [asyncio.ensure_future(consumer.receive(c)) for c in channels]
        queue_wait = asyncio.ensure_future(consumer.receive("jobs"))
        redis_server.stop(kill=True)

        # senders retry for send_timeout, then raise the documented error
        with pytest.raises(LayerUnavailable) as caught:
            await sender.group_send("room", {"type": "during"})
        assert isinstance(caught.value, ChannelsScaleError)
        with pytest.raises(LayerUnavailable):
            await sender.send("jobs", {"type": "during"})
        assert sender.stats()["send_failed"] == 2
        assert not any(task.done() for task in [*waiting, queue_wait])  # no exception

        redis_server.start()
        await wait_for_value(lambda: consumer.stats()["reconnects"] >= 1)
        # the reader resubscribes right after reconnecting; send until the group flows again
        async with asyncio.timeout(scaled(15)):
            n = 0
            while not all(task.done() for task in waiting):
                n += 1
                await sender.group_send("room", {"type": "after", "n": n})
                await asyncio.wait(waiting, timeout=0.05)
        for task in waiting:
            assert task.result()["type"] == "after"
        await sender.send("jobs", {"type": "job"})
        async with asyncio.timeout(scaled(10)):
            assert await queue_wait == {"type": "job"}

        stats = consumer.stats()
        # the failed group_send (and any publish before the resubscription) left a gap
        assert stats["lost_gap"] >= 1
        assert stats["reconnects"] >= 1
    finally:
        await consumer.close()
        await sender.close()


async def test_send_retries_across_a_short_outage(redis_server: Any) -> None:
    sender = RedisChannelLayer(hosts=[redis_server.url], send_timeout=20, **FAST)
    receiver = RedisChannelLayer(hosts=[redis_server.url], **FAST)
    try:
        await sender.send("jobs", {"type": "warm-up"})
        async with asyncio.timeout(scaled(5)):
            await receiver.receive("jobs")
        redis_server.stop(kill=True)
        sending = asyncio.ensure_future(sender.send("jobs", {"type": "retried"}))
        await wait_for_value(lambda: sender.stats()["send_retries"] >= 2)
        redis_server.start()
        async with asyncio.timeout(scaled(15)):
            await sending
            assert await receiver.receive("jobs") == {"type": "retried"}
    finally:
        await sender.close()
        await receiver.close()


async def test_no_redis_at_all_raises_layer_unavailable() -> None:
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}"], send_timeout=0.3)
    try:
        with pytest.raises(LayerUnavailable):
            await layer.group_send("g", {"type": "t"})
        # receivers and group_add of local channels do not raise: they wait for Redis
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await layer.receive(channel)
    finally:
        await layer.close()


async def test_thousand_concurrent_calls(redis_layer_factory: LayerFactory) -> None:
    """1,000 concurrent group_add/send/group_send: the pool makes callers wait, never fails."""
    layer = redis_layer_factory(pool_size=16)
    other = redis_layer_factory(prefix=layer.config.prefix)
    channels = [await layer.new_channel() for _ in range(1000)]
    async with asyncio.timeout(scaled(60)):
        await asyncio.gather(*(other.group_add("big", c) for c in channels))  # 1,000 controls
        await asyncio.gather(*(other.group_add("workers", f"w{i}") for i in range(1000)))
        await asyncio.gather(*(other.send(f"w{i}", {"type": "job"}) for i in range(1000)))
        await asyncio.gather(*(other.send(c, {"type": "direct"}) for c in channels))
        received = await asyncio.gather(*(layer.receive(c) for c in channels))
    assert {m["type"] for m in received} == {"direct"}
    await wait_for_value(lambda: layer.stats()["subscriptions"] == 3)  # inbox, flush, "big"
    async with asyncio.timeout(scaled(60)):
        await asyncio.gather(*(other.group_send("big", {"type": "g", "n": i}) for i in range(200)))
    try:
        await wait_for_value(lambda: layer.stats()["delivered"] >= 1000 + 200 * 1000, within=30)
    except TimeoutError:
        raise AssertionError(layer.stats()) from None
    assert layer.stats()["dropped_overflow"] == 1000 * 100  # capacity 100: drop-oldest
    assert layer.channel_info(channels[0])["dropped"] == 100
    assert other.stats()["send_failed"] == 0


async def test_idle_receive_over_30_seconds(redis_layer_factory: LayerFactory) -> None:
    """redis-py 8's 5 s socket_timeout must not kill idle receives (channels_redis #422)."""
    layer = redis_layer_factory()
    sender = redis_layer_factory(prefix=layer.config.prefix)
    channel = await layer.new_channel()
    await layer.group_add("quiet", channel)
    specific = asyncio.ensure_future(layer.receive(channel))
    queue = asyncio.ensure_future(layer.receive("idle-queue"))
    done, _ = await asyncio.wait([specific, queue], timeout=31)
    assert not done  # neither returned nor raised
    await sender.group_send("quiet", {"type": "wake"})
    await sender.send("idle-queue", {"type": "job"})
    async with asyncio.timeout(scaled(10)):
        assert await specific == {"type": "wake"}
        assert await queue == {"type": "job"}
    assert layer.stats()["reconnects"] == 0


async def test_cancelled_queue_receive_loses_nothing(redis_layer_factory: LayerFactory) -> None:
    layer = redis_layer_factory()
    sender = redis_layer_factory(prefix=layer.config.prefix)
    got = []
    for i in range(30):
        task = asyncio.ensure_future(layer.receive("cancel-queue"))
        await asyncio.sleep(0.01 if i % 2 else 0)
        await sender.send("cancel-queue", {"type": "t", "n": i})
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            got.append((await task)["n"])  # it may have returned before the cancel
    async with asyncio.timeout(scaled(10)):
        while len(got) < 30:
            got.append((await layer.receive("cancel-queue"))["n"])
    assert sorted(got) == list(range(30))


async def test_overflow_notice_and_drop_newest(redis_layer_factory: LayerFactory) -> None:
    layer = redis_layer_factory(capacity=2, overflow_notice_type="layer.overflow")
    sender = redis_layer_factory(prefix=layer.config.prefix)
    channel = await layer.new_channel()
    await layer.group_add("fast", channel)
    for i in range(5):
        await sender.group_send("fast", {"type": "t", "n": i})
    await wait_for_value(lambda: layer.stats()["received"] >= 5)
    async with asyncio.timeout(scaled(5)):
        notice = await layer.receive(channel)
        assert notice == {"type": "layer.overflow", "dropped": 3, "total_dropped": 3}
        assert [(await layer.receive(channel))["n"] for _ in range(2)] == [3, 4]

    newest = redis_layer_factory(capacity=2, overflow="drop_newest")
    channel = await newest.new_channel()
    await newest.group_add("fast2", channel)
    for i in range(5):
        await newest.group_send("fast2", {"type": "t", "n": i})
    async with asyncio.timeout(scaled(5)):
        assert [(await newest.receive(channel))["n"] for _ in range(2)] == [0, 1]


async def test_message_too_large(redis_layer_factory: LayerFactory) -> None:
    layer = redis_layer_factory(max_message_size=1000)
    channel = await layer.new_channel()
    big = {"type": "t", "data": "x" * 2000}
    for call in (
        layer.send(channel, big),
        layer.send("q", big),
        layer.group_send("g", big),
    ):
        with pytest.raises(MessageTooLarge):
            await call


async def test_undeliverable_and_stats(redis_layer_factory: LayerFactory) -> None:
    layer = redis_layer_factory()
    await layer.send("specific.nobodyhome!x", {"type": "lost"})
    stats = layer.stats()
    assert stats["undeliverable"] == 1
    assert stats["published"] == 1
    assert layer.channel_info("unknown!x") == {
        "buffered": 0, "dropped": 0, "expired": 0, "capacity": 0,
    }  # fmt: skip
