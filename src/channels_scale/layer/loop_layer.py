"""The layer as seen from one event loop: the wiring of a :class:`~.router.Router` (local
channels, groups, buffers; no I/O) and a :class:`~.broker.Broker` (where messages travel).

:class:`~channels_scale.layer.RedisChannelLayer` keeps one :class:`LoopLayer` per event loop
(connections belong to the loop that made them). Each loop layer has its own inbox id, so "the
process" in the docs means "one event loop of a process"; a server runs one loop. The loop layer
owns its router and its broker: one lifecycle, closed with the loop.

Paths, cheapest first:

- ``send`` to a channel of this loop's inbox: copy through the codec into the local buffer, wake
  one waiting ``receive``; no broker.
- ``group_send``: pack once, deliver to local members, one broker publish. Every process
  subscribed to the group unpacks the frame once and its router puts the *same* message dict
  into each local member's buffer.
- ``send`` to another process' channel: one broker inbox send.
- ``send`` to a normal channel: one queue push; ``receive`` on it runs a pop task while someone
  waits.

After every call that may change which groups have local members, the router's queued
subscription changes are applied to the broker at once, in order (:meth:`LoopLayer._apply`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from channels_scale.exceptions import ChannelFull, ChannelNotLocal
from channels_scale.layer import codec, history
from channels_scale.layer.broker import Broker
from channels_scale.layer.brokers import make_broker
from channels_scale.layer.buffer import ChannelBuffer
from channels_scale.layer.codec import Message
from channels_scale.layer.config import LayerConfig
from channels_scale.layer.history import StreamState
from channels_scale.layer.memory_broker import MemoryHub
from channels_scale.layer.naming import (
    CHANNEL_SUFFIX_LENGTH,
    TOKEN_LENGTH,
    Keys,
    inbox_of,
    make_channel_name,
    new_inbox_id,
    random_token,
)
from channels_scale.layer.remote import RemoteAdds
from channels_scale.layer.router import Router
from channels_scale.layer.stats import Counters

logger = logging.getLogger("channels_scale.layer")

#: how long an idle queue-pop task lingers for the next receive() before it stops, seconds
PULLER_LINGER = 10.0


class LoopLayer:
    """Router + broker of one event loop (see the module docstring)."""

    def __init__(
        self,
        config: LayerConfig,
        capacity_of: Callable[[str], int],
        max_name_length: int,
        hub: MemoryHub | None = None,
    ) -> None:
        self.config = config
        self.capacity_of = capacity_of
        self.max_name_length = max_name_length
        self.counters = Counters()
        self.keys = Keys(config.prefix)
        self.inbox_id = new_inbox_id()
        #: the id senders number frames under; a new one (inbox id + generation) when the
        #: sequence table is reset, so receivers never see numbering start again at 1
        self.origin = self.inbox_id
        self._generation = 0
        self._seq: dict[str, int] = {}
        self._own_groups = codec.group_frame_prefix(self.origin)
        self.router = Router(
            self.inbox_id, capacity_of, config.overflow, config.group_expiry, self.counters
        )
        self.broker: Broker = make_broker(config, self.counters, self._on_frame, capacity_of, hub)
        self._pullers: dict[str, asyncio.Task[None]] = {}
        self._demand: dict[str, asyncio.Event] = {}
        self._housekeeping: asyncio.Task[None] | None = None
        self.remote = RemoteAdds(self.router, self.broker, self._control, config.send_timeout)
        self._history = config.history
        #: objects of upper layers living as long as this loop's layer (presence heartbeat)
        self.resources: dict[str, Any] = {}

    # -- helpers ---------------------------------------------------------------------------

    def _next_seq(self, key: str) -> int:
        seq = self._seq.get(key, 0) + 1
        if seq == 1 and len(self._seq) >= 100_000:
            # bound memory: forget every counter and number under a new origin (a receiver
            # would take a second "1" from the same origin for a duplicate)
            self._seq.clear()
            self._generation += 1
            self.origin = f"{self.inbox_id}:{self._generation}"
            self._own_groups = codec.group_frame_prefix(self.origin)
        self._seq[key] = seq
        return seq

    def _buffer(self, channel: str) -> ChannelBuffer:
        buffer = self.router.buffers.get(channel)
        if buffer is None:
            buffer = self.router.buffer(channel)
            if self._housekeeping is None:
                self._housekeeping = asyncio.get_running_loop().create_task(self._sweep())
        return buffer

    def _apply(self) -> None:
        """Apply the router's subscription changes to the broker, oldest first, now."""
        changes = self.router.changes
        if not changes:
            return
        broker = self.broker
        for subscribe, group in changes:
            if subscribe:
                broker.subscribe_group(group)
            else:
                broker.unsubscribe_group(group)
        changes.clear()

    def _on_frame(self, data: bytes) -> None:
        if data.startswith(self._own_groups, 1) and data[0] in history.GROUP_HEADERS:
            # our own group_send back from Redis: dropped as the router would, without decoding
            self.counters.received += 1
            return
        try:
            frame = codec.unpack_frame(data)
        except ValueError:
            self.counters.bad_frames += 1
            return
        self.router.frame_received(frame, time.time())
        if self.router.changes:
            self._apply()
        self.remote.frame_applied()  # answers GROUP_ADD, takes GROUP_ADDED

    # -- process-specific channels ------------------------------------------------------------

    async def new_channel(self, prefix: str) -> str:
        channel = make_channel_name(prefix, self.inbox_id, random_token(TOKEN_LENGTH))
        limit = self.max_name_length  # Channels: names shorter than this
        if len(channel) >= limit:
            longest = limit - 1 - CHANNEL_SUFFIX_LENGTH - 1  # the dot after the prefix
            raise TypeError(
                f"new_channel prefix {prefix!r} is too long: channel names have fewer than "
                f"{limit} characters, so the prefix at most {longest}"
            )
        await self.broker.subscribe_inbox(self.inbox_id)
        self._buffer(channel)
        return channel

    def owns(self, channel: str) -> bool:
        """True for a process-specific channel of this loop's inbox."""
        return "!" in channel and inbox_of(channel) == self.inbox_id

    async def send(self, channel: str, message: Message) -> None:
        config = self.config
        expires_at = time.time() + config.expiry
        if "!" in channel:
            inbox = inbox_of(channel)
            if inbox == self.inbox_id:
                copied = codec.copy_message(message, config.max_message_size)
                if self._buffer(channel).is_full():
                    raise ChannelFull(channel)
                self.router.deliver(channel, (expires_at, copied))
                return
            seq = self._next_seq(self.keys.inbox(inbox))
            frame = codec.pack_frame(
                codec.MESSAGE, self.origin, seq, expires_at, channel, message,
                config.max_message_size,
            )  # fmt: skip
            await self.broker.send_inbox(inbox, frame)
            return
        frame = codec.pack_frame(
            codec.MESSAGE, self.origin, 0, expires_at, channel, message, config.max_message_size
        )
        if not await self.broker.queue_push(channel, frame, self.capacity_of(channel)):
            raise ChannelFull(channel)

    def local_buffer(self, channel: str) -> ChannelBuffer | None:
        """The buffer of a known process-specific channel of this loop, else None.

        A channel with a buffer was validated when it got it (or made by :meth:`new_channel`),
        so ``receive()`` can skip name validation for it.
        """
        if "!" not in channel:
            return None
        return self.router.buffers.get(channel)

    async def receive(self, channel: str) -> Message:
        if "!" in channel and inbox_of(channel) != self.inbox_id:
            raise ChannelNotLocal(
                f"receive({channel!r}): the channel belongs to another process or event loop "
                "(a new_channel() name can only be received on the event loop that made it)"
            )
        buffer = self._buffer(channel)
        if "!" not in channel:
            self._want_queue(channel)
        return await self.receive_from(buffer)

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
                        Router.wake(buffer)
                else:
                    with contextlib.suppress(ValueError):
                        buffer.waiters.remove(future)
                raise

    # -- normal channels: queues ----------------------------------------------------------------

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
        """Move messages from the channel's queue to its local buffer while receivers wait.

        Pops only while a receive() waits, so idle workers do not hoard messages; a message
        popped for a receive() cancelled meanwhile stays in the local buffer for the next one.
        The broker's pop never raises for an outage or an error reply (it waits them out).
        """
        buffer = self._buffer(channel)
        try:
            while True:
                if not buffer.waiters:
                    demand.clear()
                    try:
                        async with asyncio.timeout(PULLER_LINGER):
                            await demand.wait()
                    except TimeoutError:
                        return
                data = await self.broker.queue_pop(channel)
                if data is None:
                    continue
                try:
                    frame = codec.unpack_frame(data)
                except ValueError:
                    self.counters.bad_frames += 1
                    continue
                self.counters.received += 1
                self.router.deliver(channel, (frame.expires_at, frame.payload))
        finally:
            if self._pullers.get(channel) is asyncio.current_task():
                del self._pullers[channel]
                self._demand.pop(channel, None)

    # -- groups ------------------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        if "!" not in channel:
            await self.broker.queue_group_add(group, channel)
            return
        if (inbox := inbox_of(channel)) != self.inbox_id:
            return await self.remote.add(inbox, group, channel)  # acknowledged (remote.py)
        self.router.join(group, channel, time.time())
        self._apply()
        await self.broker.wait_subscribed(group)  # at once when subscribed already

    async def group_discard(self, group: str, channel: str) -> None:
        if "!" not in channel:
            await self.broker.queue_group_discard(group, channel)
            return
        inbox = inbox_of(channel)
        if inbox != self.inbox_id:
            await self.remote.discard(inbox, group, channel)
            return
        self.router.leave(group, channel)
        self._apply()

    async def _control(self, kind: int, inbox: str, group: str, channel: str) -> bool:
        seq = self._next_seq(self.keys.inbox(inbox))
        expires_at = time.time() + self.config.expiry
        frame = codec.pack_frame(
            kind, self.origin, seq, expires_at, channel, group, self.config.max_message_size
        )
        return await self.broker.send_inbox(inbox, frame)

    async def group_send(self, group: str, message: Message, keep: bool = True) -> None:
        config = self.config
        seq = self._next_seq(self.keys.group(group))
        frame = codec.pack_frame(
            codec.GROUP, self.origin, seq, time.time() + config.expiry, group, message,
            config.max_message_size,
        )  # fmt: skip
        rule = self._history.rule_for(group) if self._history and keep else None
        if rule is None and group in self.router.groups:
            local = codec.unpack_frame(frame)
            self.router.fanout(group, (local.expires_at, local.payload), time.time())
            self._apply()
        published = await self.broker.publish(group, frame, rule, f"{self.origin}:{seq}")
        if rule is not None and group in self.router.groups:
            # with history, local members get the message with its (epoch, offset)
            local = codec.unpack_frame(frame)
            payload = local.payload
            payload[history.EPOCH_KEY] = published.epoch
            payload[history.OFFSET_KEY] = published.offset
            self.router.fanout(group, (local.expires_at, payload), time.time())
            self._apply()

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
        state, frames = await self.broker.history(group, rule, after, limit)
        messages: list[tuple[int, Message]] = []
        for data in frames:
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

    # -- flush, housekeeping, close -------------------------------------------------------------

    async def flush(self) -> None:
        """Drop this loop's buffers and groups, delete the prefix' keys, then tell every other
        process of the prefix to drop its groups and buffers (Channels: flush removes all
        groups)."""
        self.router.flush()
        self._apply()
        notice = codec.pack_frame(
            codec.FLUSH, self.origin, 0, time.time() + self.config.expiry, "", None, 64
        )
        await self.broker.flush(notice)

    async def _sweep(self) -> None:
        """Drop expired messages and forget idle empty buffers, every ``min(expiry, 30)`` s."""
        interval = min(self.config.expiry, 30.0)
        while True:
            await asyncio.sleep(interval)
            self.router.sweep(time.time())
            self._apply()

    def gauges(self) -> dict[str, int]:
        """Current sizes: local buffers, buffered messages, groups, broker subscriptions."""
        return {**self.router.gauges(), "subscriptions": self.broker.subscriptions()}

    def channel_info(self, channel: str) -> dict[str, int]:
        """Buffered and dropped counts of one local channel (zeros when unknown)."""
        return self.router.channel_info(channel)

    async def aclose(self) -> None:
        tasks = [*self._pullers.values(), *self.remote.tasks]
        if self._housekeeping is not None:
            tasks.append(self._housekeeping)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for resource in self.resources.values():
            closer = getattr(resource, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
        await self.broker.aclose()
        for buffer in self.router.buffers.values():
            for future in buffer.waiters:
                future.cancel()
