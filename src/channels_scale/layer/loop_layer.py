"""The layer as seen from one event loop: local buffers, local groups, Redis I/O.

:class:`~channels_scale.layer.RedisChannelLayer` keeps one :class:`LoopLayer` per event loop
(redis-py connections belong to the loop that made them). Each loop layer has its own inbox id,
so "the process" in the docs means "one event loop of a process"; a server runs one loop.

Paths, cheapest first:

- ``send`` to a channel of this loop's inbox: copy through the codec into the local buffer, wake
  one waiting ``receive``; no Redis.
- ``group_send``: pack once, deliver to local members, one script call (``PUBLISH`` + a lookup
  of the group's queue members) on the group's shard, written on its auto-pipelining connection
  (:mod:`.pipe`). Every process subscribed to the group unpacks
  the frame once and puts the *same* message dict into each local member's buffer.
- ``send`` to another process' channel: one ``PUBLISH`` to its inbox.
- ``send`` to a normal channel: one ``EVALSHA`` (capacity check + ``RPUSH`` + expiry);
  ``receive`` on it runs a blocking-pop task while someone waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import redis.exceptions
from redis.asyncio import Redis

from channels_scale.exceptions import ChannelFull, ChannelNotLocal
from channels_scale.history.merge import StreamState
from channels_scale.layer import codec, history
from channels_scale.layer.backoff import full_jitter
from channels_scale.layer.buffer import ChannelBuffer, Entry, OverflowPolicy
from channels_scale.layer.codec import Message
from channels_scale.layer.connection import BLOCKING_POP_TIMEOUT, REDIS_DOWN_ERRORS, Script, Shard
from channels_scale.layer.naming import (
    CHANNEL_SUFFIX_LENGTH,
    INBOX_ID_LENGTH,
    TOKEN_LENGTH,
    Keys,
    inbox_of,
    make_channel_name,
    new_inbox_id,
    random_token,
)
from channels_scale.layer.pipe import encode
from channels_scale.layer.reader import PubSubReader
from channels_scale.layer.sharding import ShardRouter
from channels_scale.layer.stats import Counters, GapDetector

if TYPE_CHECKING:
    from channels_scale.layer.channel_layer import RedisChannelLayer

logger = logging.getLogger("channels_scale.layer")

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

#: what a blocking pop waits out and retries: Redis down, or refusing (NOREPLICAS, READONLY...)
_POP_RETRY_ERRORS: tuple[type[BaseException], ...] = (
    *REDIS_DOWN_ERRORS,
    redis.exceptions.ResponseError,
)

#: how long an idle blocking-pop task lingers for the next receive() before it stops, seconds
PULLER_LINGER = 10.0


class LoopLayer:
    """All state and I/O of the layer for one event loop."""

    def __init__(self, owner: RedisChannelLayer) -> None:
        self.owner = owner
        config = self.config = owner.config
        self.counters = Counters()
        self._drop_oldest = config.overflow is OverflowPolicy.DROP_OLDEST
        self.keys = Keys(config.prefix)
        self.router = ShardRouter(len(config.hosts))
        self.inbox_id = new_inbox_id()
        #: the id senders number frames under; a new one (inbox id + generation) when the
        #: sequence table is reset, so receivers never see numbering start again at 1
        self.origin = self.inbox_id
        self._generation = 0
        self.shards = [Shard(i, h, config, self.counters) for i, h in enumerate(config.hosts)]
        self._readers: dict[int, PubSubReader] = {}
        self._inbox_channel = self.keys.inbox(self.inbox_id).encode()
        self._flush_channel = self.keys.flush_channel().encode()
        self._inbox_shard = self.router.shard_for(self.inbox_id)
        self._buffers: dict[str, ChannelBuffer] = {}
        # group -> {channel: time added}, in the order added (oldest first, for group_expiry)
        self._groups: dict[str, dict[str, float]] = {}
        self._seq: dict[str, int] = {}
        self._gaps = GapDetector()
        self._pullers: dict[str, asyncio.Task[None]] = {}
        self._demand: dict[str, asyncio.Event] = {}
        self._housekeeping: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._history = config.history
        if self._history:
            self._history_read = [
                s.client.register_script(history.READ_HISTORY) for s in self.shards
            ]

    # -- helpers ---------------------------------------------------------------------------

    def _reader(self, shard: int) -> PubSubReader:
        reader = self._readers.get(shard)
        if reader is None:
            reader = self._readers[shard] = PubSubReader(
                self.shards[shard], self._on_pubsub, self.config, self.counters
            )
        return reader

    def _next_seq(self, key: str) -> int:
        seq = self._seq.get(key, 0) + 1
        if seq == 1 and len(self._seq) >= 100_000:
            # bound memory: forget every counter and number under a new origin (a receiver
            # would take a second "1" from the same origin for a duplicate)
            self._seq.clear()
            self._generation += 1
            self.origin = f"{self.inbox_id}:{self._generation}"
        self._seq[key] = seq
        return seq

    def _buffer(self, channel: str) -> ChannelBuffer:
        buffer = self._buffers.get(channel)
        if buffer is None:
            buffer = self._buffers[channel] = ChannelBuffer(
                self.owner.get_capacity(channel), self.config.overflow, self.counters
            )
            if self._housekeeping is None:
                self._housekeeping = asyncio.get_running_loop().create_task(self._sweep())
        return buffer

    @staticmethod
    def _wake(buffer: ChannelBuffer) -> None:
        waiters = buffer.waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- delivery into local buffers (the hot path) ---------------------------------------

    def _deliver(self, channel: str, entry: Entry) -> None:
        buffer = self._buffers.get(channel)
        if buffer is None:  # (not `or`: an empty buffer is falsy, and __len__ costs a call)
            buffer = self._buffer(channel)
        if buffer.offer(entry):
            self.counters.delivered += 1
        else:
            self.counters.dropped_overflow += 1
            if buffer.drop_oldest:
                self.counters.delivered += 1
        if buffer.waiters:
            self._wake(buffer)

    def _fanout(self, group: str, entry: Entry) -> None:
        members = self._groups.get(group)
        if not members:
            return
        if time.time() - next(iter(members.values())) > self.config.group_expiry:
            self._prune_group(group, members)
            if not members:
                return
        buffers = self._buffers
        dropped = 0
        for channel in members:
            buffer = buffers.get(channel)
            if buffer is None:
                buffer = self._buffer(channel)
            if not buffer.offer(entry):
                dropped += 1
            if buffer.waiters:
                self._wake(buffer)
        # drop-oldest stores every new message (an older one made room); drop-newest does not
        self.counters.delivered += len(members) - (0 if self._drop_oldest else dropped)
        self.counters.dropped_overflow += dropped

    def _prune_group(self, group: str, members: dict[str, float]) -> None:
        limit = time.time() - self.config.group_expiry
        for channel, added in list(members.items()):
            if added >= limit:
                break
            del members[channel]
        if not members:
            self._drop_group(group)

    def _drop_group(self, group: str) -> None:
        self._groups.pop(group, None)
        self._gaps.forget(group)
        # written now, not in a task: a group_add of the same group later in this loop turn
        # must find it unsubscribing and subscribe again after it
        self._reader(self.router.shard_for(group)).unsubscribe(self.keys.group(group).encode())

    def _on_pubsub(self, channel: bytes, data: bytes) -> None:
        try:
            frame = codec.unpack_frame(data)
        except ValueError:
            self.counters.bad_frames += 1
            return
        self.counters.received += 1
        kind = frame.kind
        if kind == codec.GROUP:
            if frame.origin[:INBOX_ID_LENGTH] == self.inbox_id:
                return  # delivered locally by group_send already
            if not self._check_seq(frame.target, frame):
                return
            if frame.offset:
                payload = frame.payload
                payload[history.EPOCH_KEY] = frame.epoch
                payload[history.OFFSET_KEY] = frame.offset
            self._fanout(frame.target, (frame.expires_at, frame.payload))
            return
        if kind == codec.FLUSH:
            if frame.origin[:INBOX_ID_LENGTH] != self.inbox_id:
                self._flush_local()
            return
        if not self._check_seq("", frame):
            return
        if kind == codec.MESSAGE:
            self._deliver(frame.target, (frame.expires_at, frame.payload))
        elif kind == codec.GROUP_ADD:
            # applied inline, like GROUP_DISCARD: control frames of one inbox apply in order
            self._join(frame.payload, frame.target)
        elif kind == codec.GROUP_DISCARD:
            self._local_group_discard(frame.payload, frame.target)
        else:
            self.counters.bad_frames += 1

    def _check_seq(self, key: str, frame: codec.Frame) -> bool:
        deliver, lost = self._gaps.observe(key, frame.origin, frame.seq)
        if lost:
            self.counters.lost_gap += lost
        return deliver

    # -- process-specific channels ------------------------------------------------------------

    async def new_channel(self, prefix: str) -> str:
        channel = make_channel_name(prefix, self.inbox_id, random_token(TOKEN_LENGTH))
        limit = self.owner.MAX_NAME_LENGTH  # Channels: names shorter than this
        if len(channel) >= limit:
            longest = limit - 1 - CHANNEL_SUFFIX_LENGTH - 1  # the dot after the prefix
            raise TypeError(
                f"new_channel prefix {prefix!r} is too long: channel names have fewer than "
                f"{limit} characters, so the prefix at most {longest}"
            )
        reader = self._reader(self._inbox_shard)
        reader.want(self._flush_channel)  # flush() of any process reaches this loop's groups
        await reader.subscribe(self._inbox_channel)
        self._buffer(channel)
        return channel

    def owns(self, channel: str) -> bool:
        """True for a process-specific channel of this loop's inbox."""
        return "!" in channel and inbox_of(channel) == self.inbox_id

    async def send(self, channel: str, message: Message) -> None:
        config = self.config
        if "!" in channel:
            inbox = inbox_of(channel)
            if inbox == self.inbox_id:
                copied = codec.copy_message(message, config.max_message_size)
                buffer = self._buffer(channel)
                if buffer.is_full():
                    raise ChannelFull(channel)
                self._deliver(channel, (time.time() + config.expiry, copied))
                return
            key = self.keys.inbox(inbox)
            frame = codec.pack_frame(
                codec.MESSAGE,
                self.origin,
                self._next_seq(key),
                time.time() + config.expiry,
                channel,
                message,
                config.max_message_size,
            )
            await self._publish(self.router.shard_for(inbox), key, frame)
            return
        frame = codec.pack_frame(
            codec.MESSAGE,
            self.origin,
            0,
            time.time() + config.expiry,
            channel,
            message,
            config.max_message_size,
        )
        if not await self._queue_push(channel, frame):
            raise ChannelFull(channel)

    async def _publish(self, shard: int, key: str, frame: bytes) -> None:
        receivers: int = await self.shards[shard].execute("send", encode(b"PUBLISH", key, frame))
        self.counters.published += 1
        if not receivers:
            self.counters.undeliverable += 1

    def local_buffer(self, channel: str) -> ChannelBuffer | None:
        """The buffer of a known process-specific channel of this loop, else None.

        A channel with a buffer was validated when it got it (or made by :meth:`new_channel`),
        so ``receive()`` can skip name validation for it.
        """
        if "!" not in channel:
            return None
        return self._buffers.get(channel)

    async def receive(self, channel: str) -> Message:
        self.check_receivable(channel)
        buffer = self._buffers.get(channel)
        if buffer is None:
            buffer = self._buffer(channel)
        if "!" not in channel:
            self._want_queue(channel)
        return await self.receive_from(buffer)

    def check_receivable(self, channel: str) -> None:
        """Raise at once for a process-specific channel this loop cannot own.

        Raises:
            ChannelNotLocal: the channel belongs to another process or event loop.
        """
        if "!" in channel and inbox_of(channel) != self.inbox_id:
            raise ChannelNotLocal(
                f"receive({channel!r}): the channel belongs to another process or event loop "
                "(a new_channel() name can only be received on the event loop that made it)"
            )

    async def receive_from(self, buffer: ChannelBuffer) -> Message:
        """Wait for the next message of ``buffer`` (cancellable without losing a message)."""
        notice = self.config.overflow_notice_type
        while True:
            message = buffer.take(time.time(), notice)
            if message is not None:
                return message
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            buffer.waiters.append(future)
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    # woken for a message we will not take: pass it to the next waiter
                    if len(buffer):
                        self._wake(buffer)
                else:
                    with contextlib.suppress(ValueError):
                        buffer.waiters.remove(future)
                raise

    # -- normal channels: Redis lists ---------------------------------------------------------

    async def _queue_push(self, channel: str, frame: bytes) -> bool:
        shard = self.router.shard_for(channel)
        args = [frame, self.owner.get_capacity(channel), int(self.config.expiry * 1000)]
        pushed = await self.shards[shard].run_script(
            "send", _QUEUE_PUSH, [self.keys.queue(channel)], args
        )
        self.counters.published += 1
        return bool(pushed)

    def _want_queue(self, channel: str) -> None:
        event = self._demand.get(channel)
        if event is None:
            event = self._demand[channel] = asyncio.Event()
        event.set()
        task = self._pullers.get(channel)
        if task is None or task.done():
            self._pullers[channel] = asyncio.get_running_loop().create_task(
                self._pull(channel, event), name=f"channels_scale pop {channel}"
            )

    async def _pull(self, channel: str, demand: asyncio.Event) -> None:
        """Move messages from the channel's Redis list to its local buffer while receivers wait.

        Pops only while a receive() waits, so idle workers do not hoard messages; a message
        popped for a receive() cancelled meanwhile stays in the local buffer for the next one.
        """
        shard = self.router.shard_for(channel)
        client: Redis = self.shards[shard].blocking_client
        key = self.keys.queue(channel)
        buffer = self._buffer(channel)
        config = self.config
        attempt = 0
        try:
            while True:
                if not buffer.waiters:
                    demand.clear()
                    try:
                        async with asyncio.timeout(PULLER_LINGER):
                            await demand.wait()
                    except TimeoutError:
                        return
                try:
                    item = await client.blpop([key], timeout=BLOCKING_POP_TIMEOUT)
                except _POP_RETRY_ERRORS as exc:
                    # an error reply (NOREPLICAS, READONLY, MISCONF) is a Redis that refuses
                    # for now, like one that is down: wait and pop again, never end the task
                    if isinstance(exc, redis.exceptions.ResponseError):
                        self.counters.error_replies += 1
                        if attempt == 0:
                            logger.warning("blocking pop on %s refused: %s", channel, exc)
                    delay = full_jitter(attempt, config.backoff_base, config.backoff_cap)
                    await asyncio.sleep(delay)
                    attempt += 1
                    continue
                attempt = 0
                if item is None:
                    continue
                try:
                    frame = codec.unpack_frame(item[1])  # type: ignore[arg-type]
                except ValueError:
                    self.counters.bad_frames += 1
                    continue
                self.counters.received += 1
                self._deliver(channel, (frame.expires_at, frame.payload))
        finally:
            if self._pullers.get(channel) is asyncio.current_task():
                del self._pullers[channel]
                self._demand.pop(channel, None)

    # -- groups ------------------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        if "!" in channel:
            inbox = inbox_of(channel)
            if inbox == self.inbox_id:
                if self._join(group, channel) is not None:
                    await self._reader(self.router.shard_for(group)).subscribe(
                        self.keys.group(group).encode()
                    )
            else:
                await self._control(codec.GROUP_ADD, inbox, group, channel)
            return
        shard = self.router.shard_for(group)
        key = self.keys.group_queues(group)
        now = time.time()
        expiry = self.config.group_expiry

        async def record(client: Redis) -> Any:
            async with client.pipeline(transaction=False) as pipe:
                pipe.zadd(key, {channel: now})
                pipe.zremrangebyscore(key, "-inf", now - expiry)
                pipe.expire(key, expiry)
                return await pipe.execute()

        await self.shards[shard].call(record, "group_add")

    def _join(self, group: str, channel: str) -> asyncio.Future[None] | None:
        """Add a local channel to ``group`` now; subscribing (if needed) is written now too.

        Returns the future of the subscription's confirmation, None when already subscribed.
        """
        members = self._groups.get(group)
        if members is None:
            members = self._groups[group] = {}
        members.pop(channel, None)  # re-adding renews: keep insertion order == age order
        members[channel] = time.time()
        return self._reader(self.router.shard_for(group)).want(self.keys.group(group).encode())

    def _local_group_discard(self, group: str, channel: str) -> None:
        members = self._groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                self._drop_group(group)

    async def group_discard(self, group: str, channel: str) -> None:
        if "!" in channel:
            inbox = inbox_of(channel)
            if inbox == self.inbox_id:
                self._local_group_discard(group, channel)
            else:
                await self._control(codec.GROUP_DISCARD, inbox, group, channel)
            return
        key = self.keys.group_queues(group)
        await self.shards[self.router.shard_for(group)].call(
            lambda client: client.zrem(key, channel), "group_discard"
        )

    async def _control(self, kind: int, inbox: str, group: str, channel: str) -> None:
        key = self.keys.inbox(inbox)
        frame = codec.pack_frame(
            kind,
            self.origin,
            self._next_seq(key),
            time.time() + self.config.expiry,
            channel,
            group,
            self.config.max_message_size,
        )
        await self._publish(self.router.shard_for(inbox), key, frame)

    async def group_send(self, group: str, message: Message, keep: bool = True) -> None:
        config = self.config
        key = self.keys.group(group)
        seq = self._next_seq(key)
        frame = codec.pack_frame(
            codec.GROUP,
            self.origin,
            seq,
            time.time() + config.expiry,
            group,
            message,
            config.max_message_size,
        )
        if self._history and keep:
            rule = self._history.rule_for(group)
            if rule is not None:
                await self._group_send_history(group, key, frame, rule, f"{self.origin}:{seq}")
                return
        if group in self._groups:
            local = codec.unpack_frame(frame)
            self._fanout(group, (local.expires_at, local.payload))
        shard = self.router.shard_for(group)
        keys: list[bytes | str] = [key, self.keys.group_queues(group)]
        args: list[bytes | float] = [frame, time.time() - config.group_expiry]
        queue_members = await self.shards[shard].run_script("group_send", _GROUP_SEND, keys, args)
        self.counters.published += 1
        for member in queue_members:
            with contextlib.suppress(ChannelFull):
                await self._queue_push(member.decode(), frame)

    async def _group_send_history(
        self, group: str, key: str, frame: bytes, rule: history.HistoryRule, send_id: str
    ) -> None:
        """One script stores the frame in the group's stream and publishes it with its offset,
        once per ``send_id`` (a retry after a lost reply finds the first try's offset)."""
        shard = self.router.shard_for(group)
        keys: list[bytes | str] = [
            key,
            self.keys.group_queues(group),
            *self.keys.history(group),
            self.keys.idempotency(group, send_id),
        ]
        args: list[bytes | float | int | str] = [
            history.with_history_header(frame),
            time.time() - self.config.group_expiry,
            random_token(16),
            rule.size,
            int(rule.ttl * 1000),
            # retries stop after send_timeout (plus one watchdog period): keep it a while longer
            int(self.config.send_timeout * 3000) + 1000,
        ]
        result = await self.shards[shard].run_script("group_send", _HISTORY_SEND, keys, args)
        self.counters.published += 1
        offset, epoch, queue_members = int(result[0]), result[1].decode(), result[2:]
        if group in self._groups:
            local = codec.unpack_frame(frame)
            payload = local.payload
            payload[history.EPOCH_KEY] = epoch
            payload[history.OFFSET_KEY] = offset
            self._fanout(group, (local.expires_at, payload))
        for member in queue_members:
            with contextlib.suppress(ChannelFull):
                await self._queue_push(member.decode(), frame)

    async def group_history(
        self, group: str, after: int, limit: int
    ) -> tuple[StreamState, list[tuple[int, Message]]]:
        """The group's stream state and its messages with offset > ``after`` (at most ``limit``).

        Raises:
            ValueError: the group keeps no history.
            LayerUnavailable: Redis unreachable for ``send_timeout``.
        """
        rule = self._history.rule_for(group) if self._history else None
        if rule is None:
            raise ValueError(f"group {group!r} keeps no history (see the layer's history option)")
        shard = self.router.shard_for(group)
        script = self._history_read[shard]
        keys = list(self.keys.history(group))
        args: list[str | int] = [random_token(16), max(after, 0), limit, int(rule.ttl * 1000)]
        result = await self.shards[shard].call(
            lambda client: script(keys=keys, args=args, client=client), "group_history"
        )
        state = StreamState(result[0].decode(), int(result[2]), int(result[1]))
        messages: list[tuple[int, Message]] = []
        for data in result[3:]:
            try:
                frame = codec.unpack_frame(data)
            except ValueError:
                self.counters.bad_frames += 1
                continue
            payload = frame.payload
            payload[history.EPOCH_KEY] = frame.epoch
            payload[history.OFFSET_KEY] = frame.offset
            messages.append((frame.offset, payload))
        return state, messages

    async def on_group_shard(self, group: str, operation: Any, what: str) -> Any:
        """Run ``operation(client)`` on the shard holding ``group``'s keys, with the layer's
        retry for ``send_timeout`` (used by presence)."""
        return await self.shards[self.router.shard_for(group)].call(operation, what)

    # -- flush, housekeeping, close -------------------------------------------------------------

    def _flush_local(self) -> None:
        for buffer in self._buffers.values():
            buffer.clear()
        for group in list(self._groups):
            self._drop_group(group)
        self._gaps.clear()

    async def flush(self) -> None:
        """Drop this loop's buffers and groups, delete the prefix' keys, then tell every other
        process of the prefix to drop its groups and buffers (Channels: flush removes all
        groups)."""
        self._flush_local()
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
        frame = codec.pack_frame(
            codec.FLUSH, self.origin, 0, time.time() + self.config.expiry, "", None, 64
        )
        channel = self.keys.flush_channel()
        for shard in self.shards:  # each process listens on its inbox' shard
            await shard.execute("flush", encode(b"PUBLISH", channel, frame))

    async def _sweep(self) -> None:
        """Drop expired messages and forget idle empty buffers, every ``min(expiry, 30)`` s."""
        interval = min(self.config.expiry, 30.0)
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for channel, buffer in list(self._buffers.items()):
                buffer.purge_expired(now)  # counted in self.counters by the buffer
                if not buffer.touched and not len(buffer) and not buffer.waiters:
                    del self._buffers[channel]
                buffer.touched = False
            for group, members in list(self._groups.items()):
                if members and now - next(iter(members.values())) > self.config.group_expiry:
                    self._prune_group(group, members)

    def gauges(self) -> dict[str, int]:
        """Current sizes: local buffers, buffered messages, groups with local members."""
        return {
            "buffers": len(self._buffers),
            "buffered": sum(len(b) for b in self._buffers.values()),
            "groups": len(self._groups),
            "subscriptions": sum(len(r.channels) for r in self._readers.values()),
        }

    def channel_info(self, channel: str) -> dict[str, int]:
        """Buffered and dropped counts of one local channel (zeros when unknown)."""
        buffer = self._buffers.get(channel)
        if buffer is None:
            return {"buffered": 0, "dropped": 0, "expired": 0, "capacity": 0}
        return {
            "buffered": len(buffer),
            "dropped": buffer.dropped,
            "expired": buffer.expired,
            "capacity": buffer.capacity,
        }

    async def aclose(self) -> None:
        tasks = [*self._pullers.values(), *self._background]
        if self._housekeeping is not None:
            tasks.append(self._housekeeping)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for reader in self._readers.values():
            await reader.aclose()
        for shard in self.shards:
            await shard.aclose()
        for buffer in self._buffers.values():
            for future in buffer.waiters:
                future.cancel()
