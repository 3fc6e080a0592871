"""The in-memory :class:`~.broker.Broker`: one process, no Redis (development and tests).

Chosen with ``"broker": "memory"`` in the layer's CONFIG (or the ``InMemoryChannelLayer`` alias
of :mod:`channels_scale.layer`). Every event loop of one layer instance shares one
:class:`MemoryHub`; a frame for a loop is handed to it with ``call_soon_threadsafe``, so the
loops of ``async_to_sync`` threads work as with Redis. The hub keeps what Redis would: queues of
normal channels, normal-channel group members, group history (epoch, offsets, idempotency keys).
The guarantees of :class:`~.broker.Broker` hold trivially: nothing is lost in transit, there is
no outage. (Presence keeps its own in-memory store per layer instance, see
:mod:`channels_scale.presence`.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack

from channels_scale.layer import history
from channels_scale.layer.broker import FrameCallback, Published
from channels_scale.layer.config import LayerConfig
from channels_scale.layer.connection import BLOCKING_POP_TIMEOUT
from channels_scale.layer.history import HistoryRule, StreamState
from channels_scale.layer.naming import Keys, random_token
from channels_scale.layer.stats import Counters

#: idempotency keys remembered (a retry comes within send_timeout; memory sends never retry)
_IDEMPOTENCY_KEYS = 10_000


@dataclass
class _Stream:
    epoch: str
    top: int = 0
    written: float = field(default_factory=time.time)
    entries: deque[tuple[int, bytes]] = field(default_factory=deque)


class MemoryHub:
    """State shared by the loops of one layer instance (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscribers: dict[str, set[MemoryBroker]] = {}
        self.queues: dict[str, deque[tuple[float, bytes]]] = {}
        self.poppers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self.group_queues: dict[str, dict[str, float]] = {}
        self.streams: dict[str, _Stream] = {}
        self.sent: OrderedDict[str, Published] = OrderedDict()

    def deliver(self, key: str, data: bytes) -> int:
        with self.lock:
            receivers = list(self.subscribers.get(key, ()))
        for broker in receivers:
            try:
                broker.loop.call_soon_threadsafe(broker.on_frame, data)
            except RuntimeError:  # that loop is closed
                continue
        return len(receivers)

    def stream(self, group: str, rule: HistoryRule) -> _Stream:
        stream = self.streams.get(group)
        if stream is None or time.time() - stream.written > rule.ttl:
            stream = self.streams[group] = _Stream(random_token(16))
        return stream


class MemoryBroker:
    """The :class:`~.broker.Broker` in memory for one event loop (see the module docstring)."""

    def __init__(
        self,
        hub: MemoryHub,
        config: LayerConfig,
        counters: Counters,
        on_frame: FrameCallback,
        capacity_of: Callable[[str], int],
    ) -> None:
        self.hub = hub
        self.config = config
        self.counters = counters
        self.on_frame = on_frame
        self.capacity_of = capacity_of
        self.keys = Keys(config.prefix)
        self.loop = asyncio.get_running_loop()
        self._subscribed: set[str] = set()

    def _subscribe(self, key: str) -> None:
        with self.hub.lock:
            self.hub.subscribers.setdefault(key, set()).add(self)
        self._subscribed.add(key)

    async def subscribe_inbox(self, inbox_id: str) -> None:
        self._subscribe(self.keys.flush_channel())
        self._subscribe(self.keys.inbox(inbox_id))

    def subscribe_group(self, group: str) -> asyncio.Future[None] | None:
        self._subscribe(self.keys.group(group))
        return None

    async def wait_subscribed(self, group: str) -> None:
        return None

    def unsubscribe_group(self, group: str) -> None:
        key = self.keys.group(group)
        with self.hub.lock:
            self.hub.subscribers.get(key, set()).discard(self)
        self._subscribed.discard(key)

    def subscriptions(self) -> int:
        return len(self._subscribed)

    async def send_inbox(self, inbox_id: str, frame: bytes) -> bool:
        self.counters.published += 1
        if not self.hub.deliver(self.keys.inbox(inbox_id), frame):
            self.counters.undeliverable += 1
            return False
        return True

    async def publish(
        self, group: str, frame: bytes, rule: HistoryRule | None, send_id: str
    ) -> Published:
        hub = self.hub
        data = frame
        published = Published()
        if rule is not None:
            with hub.lock:
                seen = hub.sent.get(send_id)
                if seen is not None:
                    return seen
                stream = hub.stream(group, rule)
                stream.top += 1
                published = Published(stream.top, stream.epoch)
                data = (
                    history.with_history_header(frame)
                    + msgpack.packb(stream.top)
                    + msgpack.packb(stream.epoch)
                )
                stream.entries.append((stream.top, data))
                stream.written = time.time()
                while len(stream.entries) > rule.size:
                    stream.entries.popleft()
                hub.sent[send_id] = published
                if len(hub.sent) > _IDEMPOTENCY_KEYS:
                    hub.sent.popitem(last=False)
        self.counters.published += 1
        hub.deliver(self.keys.group(group), data)
        oldest = time.time() - self.config.group_expiry
        with hub.lock:
            members = [c for c, t in hub.group_queues.get(group, {}).items() if t >= oldest]
        for channel in members:
            await self.queue_push(channel, frame, self.capacity_of(channel))
        return published

    async def queue_push(self, channel: str, frame: bytes, capacity: int) -> bool:
        hub = self.hub
        with hub.lock:
            queue = hub.queues.setdefault(channel, deque())
            now = time.time()
            while queue and queue[0][0] < now:
                queue.popleft()
            if len(queue) >= capacity:
                return False
            queue.append((now + self.config.expiry, frame))
            poppers = list(hub.poppers.get(channel, ()))
        self.counters.published += 1
        for loop, event in poppers:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                continue
        return True

    def _take(self, channel: str) -> bytes | None:
        with self.hub.lock:
            queue = self.hub.queues.get(channel)
            now = time.time()
            while queue:
                expires_at, frame = queue.popleft()
                if expires_at >= now:
                    return frame
        return None

    async def queue_pop(self, channel: str) -> bytes | None:
        frame = self._take(channel)
        if frame is not None:
            return frame
        event = asyncio.Event()
        entry = (self.loop, event)
        with self.hub.lock:
            self.hub.poppers.setdefault(channel, set()).add(entry)
        try:
            frame = self._take(channel)  # pushed between the first look and the registration
            if frame is not None:
                return frame
            try:
                async with asyncio.timeout(BLOCKING_POP_TIMEOUT):
                    await event.wait()
            except TimeoutError:
                return None
            return self._take(channel)
        finally:
            with self.hub.lock:
                self.hub.poppers.get(channel, set()).discard(entry)

    async def queue_group_add(self, group: str, channel: str) -> None:
        with self.hub.lock:
            members = self.hub.group_queues.setdefault(group, {})
            members[channel] = time.time()

    async def queue_group_discard(self, group: str, channel: str) -> None:
        with self.hub.lock:
            self.hub.group_queues.get(group, {}).pop(channel, None)

    async def history(
        self, group: str, rule: HistoryRule, after: int, limit: int
    ) -> tuple[StreamState, list[bytes]]:
        with self.hub.lock:
            stream = self.hub.stream(group, rule)
            first = stream.entries[0][0] if stream.entries else stream.top + 1
            frames = [data for offset, data in stream.entries if offset > after][:limit]
            return StreamState(stream.epoch, first, stream.top), frames

    async def flush(self, notice: bytes) -> None:
        hub = self.hub
        with hub.lock:
            hub.queues.clear()
            hub.group_queues.clear()
            hub.streams.clear()
            hub.sent.clear()
        hub.deliver(self.keys.flush_channel(), notice)

    async def aclose(self) -> None:
        with self.hub.lock:
            for key in self._subscribed:
                self.hub.subscribers.get(key, set()).discard(self)
        self._subscribed.clear()
