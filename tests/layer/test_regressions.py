"""Regressions found by an audit with two layer instances (two processes) on one Redis (issue 9).

Each test names the promise of docs/layer.md it guards. Two instances of the layer on one prefix
stand for two processes: each has its own inbox, pub/sub connection and group subscriptions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import redis.asyncio
from asgiref.sync import async_to_sync

from channels_scale.exceptions import ChannelNotLocal, LayerUnavailable, MessageTooLarge
from channels_scale.layer import RedisChannelLayer
from tests.layer.conftest import LayerFactory, scaled, wait_for_value
from tests.layer.proxy import ReplyDroppingProxy
from tests.layer.test_contract import nothing_on, recv

FAST = {"backoff_base": 0.02, "backoff_cap": 0.3, "health_check_interval": 1.0}


@pytest.fixture
async def redis_client(shared_redis: Any) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(shared_redis.url)
    yield client
    await client.aclose()


@pytest.fixture
async def proxy(shared_redis: Any) -> AsyncIterator[ReplyDroppingProxy]:
    server = ReplyDroppingProxy(shared_redis.port)
    await server.start()
    yield server
    await server.stop()


async def numsub(client: redis.asyncio.Redis, layer: RedisChannelLayer, group: str) -> int:
    channel = layer.keys.group(group)
    counts = await client.pubsub_numsub(channel)
    return int(counts[0][1])


# -- subscriptions and control messages -------------------------------------------------------


@pytest.mark.parametrize("together", [False, True], ids=["sequential", "two-tasks"])
async def test_discard_then_add_in_one_turn_keeps_the_group_subscribed(
    redis_layer_factory: LayerFactory, redis_client: redis.asyncio.Redis, together: bool
) -> None:
    """Was: the process' last member leaves and another joins in one loop turn; the spawned
    UNSUBSCRIBE ran after the SUBSCRIBE was skipped, leaving the process deaf for good."""
    here = redis_layer_factory()
    there = redis_layer_factory(prefix=here.config.prefix)
    old, new = await there.new_channel(), await there.new_channel()
    await there.group_add("churn", old)
    assert await numsub(redis_client, there, "churn") == 1
    if together:  # member X leaving while member Y joins, as two consumer tasks do
        await asyncio.gather(there.group_discard("churn", old), there.group_add("churn", new))
    else:
        await there.group_discard("churn", old)
        await there.group_add("churn", new)
    await here.group_send("churn", {"type": "after"})
    assert await recv(there, new) == {"type": "after"}
    assert await numsub(redis_client, there, "churn") == 1
    assert await nothing_on(there, old)


async def test_remote_add_then_discard_apply_in_order(pair_layer_factory: LayerFactory) -> None:
    """Was: a remote GROUP_ADD ran in a task, GROUP_DISCARD inline; arriving in one read, the
    discard came first and the member stayed in the group."""
    pair = pair_layer_factory()
    member = await pair.there.new_channel()
    marker = await pair.there.new_channel()
    await pair.here.send(marker, {"type": "connected"})  # the sender's pipe is open now
    assert await recv(pair.there, marker) == {"type": "connected"}
    # both control frames written in one loop turn: they reach the owner in one read
    await asyncio.gather(
        pair.here.group_add("order", member), pair.here.group_discard("order", member)
    )
    await pair.here.send(marker, {"type": "marker"})  # same inbox: after both controls
    assert await recv(pair.there, marker) == {"type": "marker"}
    await pair.here.group_add("order", marker)
    await pair.here.send(marker, {"type": "marker"})
    assert await recv(pair.there, marker) == {"type": "marker"}
    await pair.here.group_send("order", {"type": "g"})
    assert await recv(pair.there, marker) == {"type": "g"}
    assert await nothing_on(pair.there, member)


async def test_remote_group_add_returns_once_the_owner_is_subscribed(
    pair_layer_factory: LayerFactory,
) -> None:
    """Was: a remote group_add returned once its control frame was published; a group_send
    right after could reach Redis before the owner's SUBSCRIBE and be lost (seen once in a full
    run under load: test_group_send_ignores_full_members[pair]). docs/layer.md: the owner
    acknowledges once subscribed."""
    pair = pair_layer_factory()
    member = await pair.there.new_channel()
    before = pair.there.stats()
    await pair.here.group_add("acked", member)
    after = pair.there.stats()  # no wait: the owner joined and subscribed before the return
    assert after["groups"] == before["groups"] + 1
    assert after["subscriptions"] == before["subscriptions"] + 1
    await pair.here.group_send("acked", {"type": "g"})
    assert await recv(pair.there, member) == {"type": "g"}


async def test_remote_group_add_to_a_gone_process_returns_at_once(
    pair_layer_factory: LayerFactory,
) -> None:
    """Nobody listens on the inbox: nothing to wait for (counted undeliverable)."""
    pair = pair_layer_factory()
    member = await pair.there.new_channel()
    await pair.there.close()
    async with asyncio.timeout(scaled(2)):  # send_timeout is 10 s
        await pair.here.group_add("gone", member)
    assert pair.here.stats()["undeliverable"] == 1


# -- retries after a lost reply ----------------------------------------------------------------


async def test_retried_first_group_send_is_delivered_once(
    proxy: ReplyDroppingProxy, redis_layer_factory: LayerFactory
) -> None:
    """Was: the retry of a sender's *first* frame (sequence 1) was taken for a restart and
    delivered twice; async_to_sync(group_send) makes every call a first one."""
    receiver = redis_layer_factory(**FAST)
    prefix = receiver.config.prefix
    channel = await receiver.new_channel()
    await receiver.group_add("retry-group", channel)
    await receiver.group_send("warm-up", {"type": "t"})  # Redis knows the script now
    sender = redis_layer_factory(hosts=[proxy.url], prefix=prefix, **FAST)
    proxy.drop_reply_after(b"retry-group")
    await sender.group_send("retry-group", {"type": "once"})
    assert proxy.dropped == 1 and sender.stats()["send_retries"] >= 1  # the premise
    assert await recv(receiver, channel) == {"type": "once"}
    assert await nothing_on(receiver, channel, 0.5)


async def test_history_stored_once_when_the_reply_is_lost(
    proxy: ReplyDroppingProxy, redis_layer_factory: LayerFactory
) -> None:
    """Was: a group_send with history whose reply was lost was stored under two offsets (and
    shown twice to a client resuming from before it): the script checks an idempotency key."""
    history = {"hist.*": {"size": 100, "ttl": 60}}
    receiver = redis_layer_factory(history=history, **FAST)
    prefix = receiver.config.prefix
    channel = await receiver.new_channel()
    await receiver.group_add("hist.room", channel)
    await receiver.group_send("hist.warm", {"type": "t"})  # Redis knows the script now
    sender = redis_layer_factory(hosts=[proxy.url], prefix=prefix, history=history, **FAST)
    proxy.drop_reply_after(b"hist.room")
    await sender.group_send("hist.room", {"type": "once"})
    assert proxy.dropped == 1 and sender.stats()["send_retries"] >= 1  # the premise
    await sender.group_send("hist.room", {"type": "second"})
    state, messages = await receiver.group_history("hist.room")
    assert [(offset, m["type"]) for offset, m in messages] == [(1, "once"), (2, "second")]
    assert state.top == 2
    assert (await recv(receiver, channel))["_offset"] == 1
    assert (await recv(receiver, channel))["_offset"] == 2


async def test_send_with_no_reply_raises_within_send_timeout(
    proxy: ReplyDroppingProxy, redis_layer_factory: LayerFactory
) -> None:
    """Was: a group_send whose reply never came returned after 3.4 s with send_timeout=2."""
    sender = redis_layer_factory(hosts=[proxy.url], send_timeout=1.0, **FAST)
    await sender.group_send("silent", {"type": "connect first"})
    proxy.drop_reply_after(b"silent", close=False)
    started = time.monotonic()
    with pytest.raises(LayerUnavailable):
        await sender.group_send("silent", {"type": "lost"})
    # send_timeout, plus at most one watchdog period (0.5 s) of the pipe
    assert time.monotonic() - started < scaled(1.0 + 0.5 + 0.4)


# -- receive() -----------------------------------------------------------------------------------


async def test_receive_on_normal_channel_survives_an_error_reply(redis_server: Any) -> None:
    """Was: one NOREPLICAS (READONLY, MISCONF) reply to the blocking pop ended its task and the
    waiting receive() hung for good."""
    layer = RedisChannelLayer(hosts=[redis_server.url], **FAST)
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await admin.config_set("min-replicas-to-write", 1)  # every write now fails NOREPLICAS
        waiting = asyncio.ensure_future(layer.receive("refused-jobs"))
        await wait_for_value(lambda: layer.stats()["error_replies"] >= 2)
        assert not waiting.done()
        await admin.config_set("min-replicas-to-write", 0)
        await layer.send("refused-jobs", {"type": "job"})
        async with asyncio.timeout(scaled(10)):
            assert await waiting == {"type": "job"}
    finally:
        await admin.aclose()
        await layer.close()


async def test_receive_on_another_process_channel_raises_at_once(
    pair_layer_factory: LayerFactory,
) -> None:
    pair = pair_layer_factory()
    theirs = await pair.there.new_channel()
    with pytest.raises(ChannelNotLocal):
        async with asyncio.timeout(scaled(2)):
            await pair.here.receive(theirs)


def test_receive_in_another_async_to_sync_call_raises(redis_layer_factory: LayerFactory) -> None:
    """channels_redis' test_double_receive: a name made in one async_to_sync call (one event
    loop) and received in another used to wait forever."""
    layer = redis_layer_factory()
    channel = async_to_sync(layer.new_channel)()
    with pytest.raises(ChannelNotLocal):
        async_to_sync(layer.receive)(channel)


async def test_expired_messages_taken_by_receive_are_counted(
    redis_layer_factory: LayerFactory,
) -> None:
    layer = redis_layer_factory(expiry=1)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "old"})
    await asyncio.sleep(1.1)  # the behaviour under test is time itself
    await layer.send(channel, {"type": "new"})
    assert await recv(layer, channel) == {"type": "new"}
    assert layer.stats()["expired"] == 1
    assert layer.channel_info(channel)["expired"] == 1


# -- sizes and names -----------------------------------------------------------------------------


def message_of_size(size: int) -> dict[str, Any]:
    """A message whose msgpack encoding is exactly ``size`` bytes."""
    filler = size
    while len(msgpack.packb({"type": "t", "b": b"x" * filler})) > size:
        filler -= 1
    message = {"type": "t", "b": b"x" * filler}
    assert len(msgpack.packb(message)) == size
    return message


async def test_one_largest_message_on_every_path(pair_layer_factory: LayerFactory) -> None:
    """Was: 1,048,556 bytes for a local send but 1,048,495 for a remote one, and so on."""
    limit = 1000
    pair = pair_layer_factory(max_message_size=limit, history={"h.*": {"size": 10, "ttl": 60}})
    mine, theirs = await pair.here.new_channel(), await pair.there.new_channel()
    await pair.here.group_add("h.room", mine)
    await pair.here.group_add("plain-room", mine)
    long_name = "q" * 90  # longer names must not shrink the room left for the message
    paths = {
        "local send": lambda m: pair.here.send(mine, m),
        "remote send": lambda m: pair.here.send(theirs, m),
        "normal channel": lambda m: pair.here.send(long_name, m),
        "group_send": lambda m: pair.here.group_send("plain-room", m),
        "group_send with history": lambda m: pair.here.group_send("h.room", m),
    }
    for what, send in paths.items():
        await send(message_of_size(limit))
        with pytest.raises(MessageTooLarge):
            await send(message_of_size(limit + 1))
            pytest.fail(f"{what}: a message over the limit was sent")


async def test_new_channel_prefix_too_long_is_refused(redis_layer_factory: LayerFactory) -> None:
    """Was: a prefix of 81 characters made a 106-character name that send() then rejected."""
    layer = redis_layer_factory()
    longest = layer.MAX_NAME_LENGTH - 1 - 26  # names < 100; the dot, inbox id, "!", token
    channel = await layer.new_channel(prefix="p" * longest)
    await layer.send(channel, {"type": "fits"})
    assert await recv(layer, channel) == {"type": "fits"}
    with pytest.raises(TypeError, match="too long"):
        await layer.new_channel(prefix="p" * 81)
    with pytest.raises(TypeError, match="too long"):
        await layer.new_channel(prefix="p" * (longest + 1))
