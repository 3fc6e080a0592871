"""The Redis :class:`~.broker.Broker`: one Redis, or K shards chosen by jump hash.

Paths, per shard (see :mod:`.connection` for the connections):

- ``publish``: one script call (``PUBLISH`` + a lookup of the group's queue members; with
  history also the stream append under an idempotency key) on the group's shard, written on its
  auto-pipelining connection (:mod:`.pipe`), then one queue push per normal-channel member.
- ``send_inbox``: one ``PUBLISH`` to the owner's inbox channel.
- ``queue_push``: one script (capacity check + ``RPUSH`` + expiry); ``queue_pop``: ``BLPOP``
  with a short server-side timeout on the blocking pool.
- subscriptions: one pub/sub reader per shard (:mod:`.reader`) for the inbox, the groups with
  local members and the prefix' flush channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio import Redis

from channels_scale.exceptions import ChannelFull
from channels_scale.layer import history
from channels_scale.layer.backoff import full_jitter
from channels_scale.layer.broker import FrameCallback, Published
from channels_scale.layer.config import LayerConfig
from channels_scale.layer.connection import BLOCKING_POP_TIMEOUT, REDIS_DOWN_ERRORS, Script, Shard
from channels_scale.layer.history import HistoryRule, StreamState
from channels_scale.layer.naming import Keys, random_token
from channels_scale.layer.pipe import encode
from channels_scale.layer.reader import PubSubReader
from channels_scale.layer.sharding import ShardRouter
from channels_scale.layer.stats import Counters

logger = logging.getLogger("channels_scale.layer")

T = TypeVar("T")

# KEYS[1] group channel, KEYS[2] its queue members; ARGV frame, oldest valid join time.
# One round trip per group_send; the lookup of a missing set (no normal channel joined) is O(1).
_GROUP_SEND = Script("""
redis.call('PUBLISH', KEYS[1], ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[2], '+inf')
""")

# KEYS[1] queue; ARGV frame, capacity, expiry in ms. Returns 0 when full.
_QUEUE_PUSH = Script("""
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
""")
_HISTORY_SEND = Script(history.GROUP_SEND_HISTORY)
_HISTORY_READ = Script(history.READ_HISTORY)

#: what a blocking pop waits out and retries: Redis down, or refusing (NOREPLICAS, READONLY...)
_POP_RETRY_ERRORS: tuple[type[BaseException], ...] = (
    *REDIS_DOWN_ERRORS,
    redis.exceptions.ResponseError,
)


class RedisBroker:
    """The :class:`~.broker.Broker` on Redis for one event loop (see the module docstring)."""

    def __init__(
        self,
        config: LayerConfig,
        counters: Counters,
        on_frame: FrameCallback,
        capacity_of: Callable[[str], int],
    ) -> None:
        self.config = config
        self.capacity_of = capacity_of
        self.counters = counters
        self.on_frame = on_frame
        self.keys = Keys(config.prefix)
        self.router = ShardRouter(len(config.hosts))
        self.shards = [Shard(i, h, config, counters) for i, h in enumerate(config.hosts)]
        self._readers: dict[int, PubSubReader] = {}
        self._pop_attempts: dict[str, int] = {}

    def _reader(self, shard: int) -> PubSubReader:
        reader = self._readers.get(shard)
        if reader is None:
            reader = self._readers[shard] = PubSubReader(
                self.shards[shard], self._on_pubsub, self.config, self.counters
            )
        return reader

    def _on_pubsub(self, channel: bytes, data: bytes) -> None:
        self.on_frame(data)

    # -- subscriptions --------------------------------------------------------------------------

    async def subscribe_inbox(self, inbox_id: str) -> None:
        reader = self._reader(self.router.shard_for(inbox_id))
        reader.want(self.keys.flush_channel().encode())  # flush() of any process reaches us
        await reader.subscribe(self.keys.inbox(inbox_id).encode())

    def subscribe_group(self, group: str) -> asyncio.Future[None] | None:
        return self._reader(self.router.shard_for(group)).want(self.keys.group(group).encode())

    async def wait_subscribed(self, group: str) -> None:
        await self._reader(self.router.shard_for(group)).subscribe(self.keys.group(group).encode())

    def unsubscribe_group(self, group: str) -> None:
        self._reader(self.router.shard_for(group)).unsubscribe(self.keys.group(group).encode())

    def subscriptions(self) -> int:
        return sum(len(r.channels) for r in self._readers.values())

    # -- sending ----------------------------------------------------------------------------------

    # Where each command runs: on the shard of the name it concerns (a group, an inbox id, a
    # normal channel). The cluster broker overrides these four to run on the slot's master.
    PUBLISH = b"PUBLISH"

    async def _execute(self, name: str, what: str, *args: bytes | str | int | float) -> Any:
        return await self.shards[self.router.shard_for(name)].execute(what, encode(*args))

    async def _script(
        self, name: str, what: str, script: Script, keys: list[bytes | str], args: list[Any]
    ) -> Any:
        return await self.shards[self.router.shard_for(name)].run_script(what, script, keys, args)

    async def _call(self, name: str, operation: Callable[[Redis], Awaitable[T]], what: str) -> T:
        return await self.shards[self.router.shard_for(name)].call(operation, what)

    async def _blocking_pop(self, channel: str) -> Any:
        client: Redis = self.shards[self.router.shard_for(channel)].blocking_client
        return await client.blpop([self.keys.queue(channel)], timeout=BLOCKING_POP_TIMEOUT)

    async def send_inbox(self, inbox_id: str, frame: bytes) -> bool:
        key = self.keys.inbox(inbox_id)
        receivers: int = await self._execute(inbox_id, "send", self.PUBLISH, key, frame)
        self.counters.published += 1
        if not receivers:
            self.counters.undeliverable += 1
            return False
        return True

    async def publish(
        self, group: str, frame: bytes, rule: HistoryRule | None, send_id: str
    ) -> Published:
        oldest = time.time() - self.config.group_expiry
        keys: list[bytes | str] = [self.keys.group(group), self.keys.group_queues(group)]
        if rule is None:
            members = await self._script(group, "group_send", _GROUP_SEND, keys, [frame, oldest])
            published = Published()
        else:
            keys += [*self.keys.history(group), self.keys.idempotency(group, send_id)]
            args: list[bytes | float | int | str] = [
                history.with_history_header(frame),
                oldest,
                random_token(16),
                rule.size,
                int(rule.ttl * 1000),
                # retries stop after send_timeout (plus a watchdog period): keep it longer
                int(self.config.send_timeout * 3000) + 1000,
            ]
            result = await self._script(group, "group_send", _HISTORY_SEND, keys, args)
            published = Published(int(result[0]), result[1].decode())
            members = result[2:]
        self.counters.published += 1
        for member in members:
            with contextlib.suppress(ChannelFull):
                channel = member.decode()
                await self.queue_push(channel, frame, self.capacity_of(channel))
        return published

    # -- normal channels: Redis lists -------------------------------------------------------------

    async def queue_push(self, channel: str, frame: bytes, capacity: int) -> bool:
        args = [frame, capacity, int(self.config.expiry * 1000)]
        pushed = await self._script(channel, "send", _QUEUE_PUSH, [self.keys.queue(channel)], args)
        self.counters.published += 1
        return bool(pushed)

    async def queue_pop(self, channel: str) -> bytes | None:
        """One ``BLPOP`` of at most :data:`BLOCKING_POP_TIMEOUT`; an outage or an error reply
        (NOREPLICAS, READONLY, MISCONF) is waited out with backoff, never raised."""
        try:
            item = await self._blocking_pop(channel)
        except _POP_RETRY_ERRORS as exc:
            attempt = self._pop_attempts.get(channel, 0)
            self._pop_attempts[channel] = attempt + 1
            if isinstance(exc, redis.exceptions.ResponseError):
                self.counters.error_replies += 1
                if attempt == 0:
                    logger.warning("blocking pop on %s refused: %s", channel, exc)
            config = self.config
            await asyncio.sleep(full_jitter(attempt, config.backoff_base, config.backoff_cap))
            return None
        self._pop_attempts.pop(channel, None)
        return None if item is None else bytes(item[1])

    async def queue_group_add(self, group: str, channel: str) -> None:
        key = self.keys.group_queues(group)
        now = time.time()
        expiry = self.config.group_expiry

        async def record(client: Redis) -> Any:
            async with client.pipeline(transaction=False) as pipe:
                pipe.zadd(key, {channel: now})
                pipe.zremrangebyscore(key, "-inf", now - expiry)
                pipe.expire(key, expiry)
                return await pipe.execute()

        await self._call(group, record, "group_add")

    async def queue_group_discard(self, group: str, channel: str) -> None:
        key = self.keys.group_queues(group)
        await self._call(group, lambda client: client.zrem(key, channel), "group_discard")

    # -- history, scripts for presence, flush ------------------------------------------------

    async def history(
        self, group: str, rule: HistoryRule, after: int, limit: int
    ) -> tuple[StreamState, list[bytes]]:
        keys: list[bytes | str] = list(self.keys.history(group))
        args = [random_token(16), max(after, 0), limit, int(rule.ttl * 1000)]
        result = await self.run_script(group, _HISTORY_READ, keys, args, "group_history")
        state = StreamState(result[0].decode(), int(result[2]), int(result[1]))
        return state, list(result[3:])

    async def run_script(
        self, group: str, script: Script, keys: list[bytes | str], args: list[Any], what: str
    ) -> Any:
        """Run a script on the shard of ``group`` (``EVALSHA``, ``EVAL`` after NOSCRIPT), with
        the layer's bounded retry: the one way the layer and presence run Lua."""
        return await self._script(group, what, script, keys, args)

    async def on_group_shard(self, group: str, operation: Any, what: str) -> Any:
        """Run ``operation(client)`` on the shard holding ``group``'s keys, with the layer's
        retry for ``send_timeout`` (used by presence)."""
        return await self._call(group, operation, what)

    async def flush(self, notice: bytes) -> None:
        pattern = self.keys.pattern()

        async def unlink_all(client: Redis) -> None:
            batch: list[Any] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)

        for shard in self.shards:
            await shard.call(unlink_all, "flush")
        channel = self.keys.flush_channel()
        for shard in self.shards:  # each process listens on its inbox' shard
            await shard.execute("flush", encode(b"PUBLISH", channel, notice))

    async def aclose(self) -> None:
        for reader in self._readers.values():
            await reader.aclose()
        for shard in self.shards:
            await shard.aclose()
