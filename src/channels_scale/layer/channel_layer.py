"""``RedisChannelLayer``: the Channels-facing object, one :class:`LoopLayer` per event loop."""

from __future__ import annotations

import asyncio
import threading
import time
import types
from collections.abc import Callable
from typing import Any, TypeVar

from channels.layers import BaseChannelLayer

from channels_scale.exceptions import ConfigError
from channels_scale.layer.buffer import Sink
from channels_scale.layer.codec import Message
from channels_scale.layer.config import LayerConfig
from channels_scale.layer.connection import Script
from channels_scale.layer.history import StreamState
from channels_scale.layer.loop_layer import LoopLayer
from channels_scale.layer.memory_broker import MemoryHub
from channels_scale.layer.naming import Keys
from channels_scale.layer.redis_broker import RedisBroker
from channels_scale.layer.stats import Counters

T = TypeVar("T")


class RedisChannelLayer(BaseChannelLayer):  # type: ignore[misc]
    """A Channels layer on Redis with O(1) Redis work per group message.

    Configure it as any Channels layer::

        CHANNEL_LAYERS = {"default": {
            "BACKEND": "channels_scale.layer.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://:password@127.0.0.1:6379/0"]},
        }}

    Guarantees (see ``docs/layer.md`` for the design):

    - **Delivery.** Messages to process-specific channels (``new_channel()`` names, with ``!``)
      and group messages travel by Redis pub/sub: *at most once*. They are lost when the
      receiving process is disconnected from Redis (counted in :meth:`stats` as ``lost_gap``
      once later messages reveal the gap), when they expire (``expiry`` seconds) before a
      ``receive()`` takes them, or when the channel's local buffer is full. Normal channels
      (no ``!``) are Redis lists: each message goes to exactly one ``receive()`` of any process.
    - **Ordering.** Messages from one sender (one task awaiting each call) to one channel arrive
      in the order sent.
    - **Full.** ``send()`` raises :class:`~channels_scale.exceptions.ChannelFull` when a normal
      channel, or a channel of the sending process, is at capacity. For deliveries the sender
      cannot wait for (group messages, another process' channels) the receiver applies
      ``overflow`` (default ``"drop_oldest"``), counts the drop, and can tell the consumer with a
      message of type ``overflow_notice_type``.
    - **Redis down.** ``receive()`` never raises for it: receivers wait while the layer
      reconnects (exponential backoff, full jitter) and resubscribes. Senders retry for
      ``send_timeout`` seconds, then raise :class:`~channels_scale.exceptions.LayerUnavailable`.
    - **Cancellation.** Cancelling a pending ``receive()`` loses no message.
    - **Loops.** Usable from any number of event loops (``async_to_sync`` in threads); each
      loop has its own connections and inbox, closed with the loop.

    Members of a group in one process receive the same decoded message dict: treat received
    messages as read-only (Channels consumers do).
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        hosts: Any = None,
        prefix: str = "asgi",
        expiry: float = 60,
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: dict[Any, int] | None = None,
        serializer_format: str = "msgpack",
        **options: Any,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        if serializer_format != "msgpack":
            raise ConfigError("serializer_format: only 'msgpack' is supported")
        self.config = LayerConfig.build(
            hosts=hosts,
            prefix=prefix,
            expiry=expiry,
            group_expiry=group_expiry,
            capacity=capacity,
            **options,
        )
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.group_expiry = group_expiry
        self._layers: dict[asyncio.AbstractEventLoop, LoopLayer] = {}
        self._lock = threading.Lock()
        self._retired = Counters()
        #: with the memory broker: the state every event loop of this instance shares
        self._hub = MemoryHub() if self.config.broker == "memory" else None
        self._shared: dict[str, Any] = {}

    # -- per-loop layers -------------------------------------------------------------------

    def _layer(self) -> LoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            with self._lock:
                layer = self._layers.get(loop)
                if layer is None:
                    layer = self._layers[loop] = LoopLayer(
                        self.config, self.get_capacity, self.MAX_NAME_LENGTH, self._hub
                    )
                    self._close_with(loop)
        return layer

    def _close_with(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close this loop's layer when the loop closes (asgiref closes each temporary loop)."""
        original = loop.close
        owner = self

        def close(self: asyncio.AbstractEventLoop) -> None:
            layer = owner._layers.get(loop)
            if layer is not None and not loop.is_running():
                loop.run_until_complete(owner._retire(loop, layer))
            loop.close = original  # type: ignore[method-assign]
            original()

        loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]

    async def _retire(self, loop: asyncio.AbstractEventLoop, layer: LoopLayer) -> None:
        with self._lock:
            if self._layers.get(loop) is layer:
                del self._layers[loop]
            for name, value in layer.counters.as_dict().items():
                setattr(self._retired, name, getattr(self._retired, name) + value)
        await layer.aclose()

    # -- Channels layer API ----------------------------------------------------------------

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A new process-specific channel name, ``"<prefix><inbox>!<token>"``.

        All channels of one process (event loop) share its inbox: one pub/sub subscription for
        all of them. Only this event loop may ``receive()`` on it.

        Raises:
            TypeError: the prefix is so long that the name would exceed ``MAX_NAME_LENGTH``.
        """
        return await self._layer().new_channel(prefix)

    async def send(self, channel: str, message: Message) -> None:
        """Send ``message`` (a msgpack-encodable dict) to ``channel``.

        Raises:
            TypeError: bad channel name or message type.
            ChannelFull: the channel is a normal channel or a channel of this process, and full.
            MessageTooLarge: the encoded message is over ``max_message_size``.
            LayerUnavailable: Redis unreachable for ``send_timeout`` seconds.
        """
        self.require_valid_channel_name(channel)
        if not isinstance(message, dict):
            raise TypeError("message must be a dict")
        await self._layer().send(channel, message)

    async def receive(self, channel: str) -> Message:
        """Wait for the next message on ``channel`` and return it.

        Never raises because Redis is down. Cancelling it loses no message. When several
        ``receive()`` wait on one channel, one of them gets each message.

        Raises:
            TypeError: bad channel name.
            ChannelNotLocal: a process-specific channel of another process or event loop.
        """
        layer = self._layers.get(asyncio.get_running_loop())
        if layer is not None:
            buffer = layer.local_buffer(channel)
            if buffer is not None:  # a known local channel: valid, no lookup, no inner await
                message = buffer.take(time.time(), self.config.overflow_notice_type)
                if message is not None:
                    return message
                return await layer.receive_from(buffer)
        self.require_valid_channel_name(channel)
        return await self._layer().receive(channel)

    def owns(self, channel: str) -> bool:
        """True when ``channel`` is a process-specific channel of the running event loop."""
        return self._layer().owns(channel)

    def receive_nowait(self, channel: str) -> Message | None:
        """The next message of ``channel`` if one is buffered here, else None (never waits).

        Only for a channel of this event loop made by :meth:`new_channel`; like ``receive()``,
        it returns an overflow notice first when one is due.
        """
        layer = self._layers.get(asyncio.get_running_loop())
        buffer = None if layer is None else layer.local_buffer(channel)
        if buffer is None:
            return None
        return buffer.take(time.time(), self.config.overflow_notice_type)

    def set_sink(self, channel: str, sink: Sink | None) -> bool:
        """Let ``sink`` take messages for ``channel`` at once, instead of ``receive()``.

        For each message a local ``send`` or a group message brings to the channel, while
        nothing is buffered for it (no message, no overflow notice), ``sink(message)`` is called
        first, from the delivering code, synchronously: True means it took the message (counted
        in ``delivered`` and ``delivered_direct``), False that the message is buffered as usual.
        So a channel's messages reach it in order, whichever way each goes. ``None`` removes
        the sink (do it when the receiver stops: the sink keeps its buffer alive).

        Returns False, setting nothing, when ``channel`` is not a channel of this event loop
        made by :meth:`new_channel` (or already swept); the consumers use it for their direct
        path (:mod:`channels_scale.consumers.direct`).
        """
        layer = self._layers.get(asyncio.get_running_loop())
        buffer = None if layer is None else layer.local_buffer(channel)
        if buffer is None:
            return False
        buffer.sink = sink
        return True

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (renews its membership for ``group_expiry`` seconds).

        A channel of this process joins at once (and the process subscribes to the group
        if it is the first local member). A channel of another process is added by its owner
        when it receives the control message (asynchronously). A normal channel is recorded in
        Redis.

        Raises:
            LayerUnavailable: the channel is not local and Redis stayed unreachable.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._layer().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; the process unsubscribes after its last member."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._layer().group_discard(group, channel)

    async def group_send(self, group: str, message: Message, *, history: bool = True) -> None:
        """Send ``message`` to every member of ``group``: one ``PUBLISH`` whatever the members.

        In a group with history (see :meth:`group_history`) the message is also stored and gets
        ``_epoch``/``_offset``; ``history=False`` sends it live only (presence events, typing
        indicators: things a reconnecting client need not replay).

        Raises:
            TypeError: bad group name or message type.
            MessageTooLarge: the encoded message is over ``max_message_size``.
            LayerUnavailable: Redis unreachable for ``send_timeout`` seconds (members in this
                process were served already).
        """
        self.require_valid_group_name(group)
        if not isinstance(message, dict):
            raise TypeError("message must be a dict")
        await self._layer().group_send(group, message, history)

    # -- history (groups matching a ``history`` pattern) ------------------------------------

    def history_enabled(self, group: str) -> bool:
        """Whether ``group`` keeps history (its name matches a ``history`` pattern)."""
        return self.config.history.rule_for(group) is not None

    async def group_history(
        self, group: str, after: int = 0, limit: int = 1000
    ) -> tuple[StreamState, list[tuple[int, Message]]]:
        """Read ``group``'s history: the stream state and up to ``limit`` messages after ``after``.

        Each message dict carries ``_epoch`` and ``_offset``, like the live copies. A group never
        written to gets its epoch here, so a first reader and a first writer agree on it.

        Raises:
            ValueError: the group keeps no history.
            LayerUnavailable: Redis unreachable for ``send_timeout`` seconds.
        """
        self.require_valid_group_name(group)
        return await self._layer().group_history(group, after, limit)

    async def on_group_shard(self, group: str, operation: Any, what: str = "call") -> Any:
        """Run ``await operation(redis_client)`` on the shard that holds ``group``'s keys,
        retrying while Redis is unreachable for ``send_timeout`` seconds."""
        return await self._redis_broker().on_group_shard(group, operation, what)

    async def run_group_script(
        self, group: str, script: Script, keys: list[bytes | str], args: list[Any], what: str
    ) -> Any:
        """Run a Lua ``script`` on the shard holding ``group``'s keys: ``EVALSHA``, ``EVAL`` once
        after NOSCRIPT, with the layer's bounded retry (the one way scripts run; presence uses
        it)."""
        return await self._redis_broker().run_script(group, script, keys, args, what)

    def _redis_broker(self) -> RedisBroker:
        broker = self._layer().broker
        if not isinstance(broker, RedisBroker):
            raise ConfigError("presence and direct Redis calls need the redis broker")
        return broker

    def instance_resource(self, key: str, make: Callable[[], T]) -> T:
        """The object stored under ``key`` for this layer instance (all event loops), made by
        ``make()`` the first time (thread-safe). Presence keeps its in-memory store here when the
        layer runs the memory broker."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = make()
            value: T = self._shared[key]
        return value

    def loop_resource(self, key: str, make: Callable[[], T]) -> T:
        """The object stored under ``key`` for the running event loop, made by ``make()`` the
        first time; closed (its ``aclose()`` awaited, if it has one) when the loop's layer
        closes. Presence keeps its heartbeat here: one lifecycle with the layer."""
        resources = self._layer().resources
        if key not in resources:
            resources[key] = make()
        value: T = resources[key]
        return value

    @property
    def keys(self) -> Keys:
        """Key and channel names of this layer's prefix (see :class:`~.naming.Keys`)."""
        return Keys(self.config.prefix)

    async def flush(self) -> None:
        """Delete every Redis key of this prefix and every group membership and buffered message
        of every process (event loop) using it; the other processes drop theirs when the flush
        notice reaches them through pub/sub."""
        await self._layer().flush()

    async def close(self) -> None:
        """Close the current loop's connections (a later call opens new ones)."""
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is not None:
            await self._retire(loop, layer)

    # -- observability -------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters summed over every event loop (see :class:`~.stats.Counters`), plus gauges."""
        total = Counters(**self._retired.as_dict())
        gauges: dict[str, int] = {}
        for layer in list(self._layers.values()):
            for name, value in layer.counters.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
            for name, value in layer.gauges().items():
                gauges[name] = gauges.get(name, 0) + value
        return {**total.as_dict(), **gauges}

    def channel_info(self, channel: str) -> dict[str, int]:
        """``buffered``, ``dropped``, ``expired`` and ``capacity`` of a local channel.

        A consumer can check ``dropped`` to close a client that does not keep up.
        """
        for layer in list(self._layers.values()):
            info = layer.channel_info(channel)
            if info["capacity"]:
                return info
        return {"buffered": 0, "dropped": 0, "expired": 0, "capacity": 0}
