"""The pub/sub reader: one connection per shard and event loop, for the inbox and every group.

The reader owns its connection and its reconnect loop (no redis-py ``PubSub`` object, whose
retry and timeout behaviour changes between versions):

- it reads with no timeout at all (an idle subscription is normal, channels_redis issue #422) and
  instead sends a ``PING`` every ``health_check_interval``; when nothing at all came back for
  three intervals the connection is deemed dead and closed;
- on any error it reconnects with exponential backoff and full jitter, then subscribes again to
  every channel in :attr:`PubSubReader.channels` (the inbox and each group with local members);
- it never ends on an error: one that is not an outage (a bad TLS file...) is logged once and
  retried like one; a ``SUBSCRIBE`` Redis refuses (an ACL without the channel: ``-NOPERM``) is
  logged once, counted (``pubsub_errors``) and sent again after a backoff, for that channel alone
  (one channel per command, so an error reply names its channel);
- the connection is the layer's own (:func:`.wire.open_connection`: TLS, auth, db, name);
  ``hiredis`` parses whatever arrived in the transport's ``data_received``, and each message is
  handed to a plain callback there, synchronously (no coroutine per message; several messages
  of one read are handled in one go). The callback must not block (it decodes once and fans
  out to local buffers); an exception in it is logged and the message dropped.

Delivery through pub/sub is at most once: what is published while the reader is disconnected is
lost (the layer counts such gaps by sequence numbers, see :class:`~.stats.GapDetector`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Callable

import hiredis

from channels_scale.layer.backoff import full_jitter
from channels_scale.layer.config import LayerConfig
from channels_scale.layer.connection import REDIS_DOWN_ERRORS, Shard
from channels_scale.layer.pipe import ReplyError, encode
from channels_scale.layer.stats import Counters
from channels_scale.layer.wire import open_connection

logger = logging.getLogger("channels_scale.layer")

MessageCallback = Callable[[bytes, bytes], None]


class SubscriptionState(enum.Enum):
    """One pub/sub channel's state in a reader (see :meth:`PubSubReader.state`)."""

    UNSUBSCRIBED = "unsubscribed"
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBING = "unsubscribing"


class _Protocol(asyncio.Protocol):
    """Parses the subscribed connection's replies as they arrive and dispatches them."""

    def __init__(self, reader: PubSubReader) -> None:
        self.reader = reader
        self.parser = hiredis.Reader(replyError=ReplyError)
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[Exception | None] = self.loop.create_future()

    def data_received(self, data: bytes) -> None:
        owner = self.reader
        owner._last_read = self.loop.time()
        parser = self.parser
        parser.feed(data)
        on_message = owner.on_message
        while True:
            reply = parser.gets()
            if reply is False:
                return
            if type(reply) is list and len(reply) >= 3:
                kind = reply[0]
                if kind == b"message" or kind == b"smessage":
                    try:
                        on_message(reply[1], reply[2])
                    except Exception:
                        logger.exception("error handling a pub/sub message")
                    continue
                if kind == b"subscribe" or kind == b"ssubscribe":
                    owner._replied()
                    owner._acknowledged(reply[1], True)
                    continue
                if kind == b"unsubscribe" or kind == b"sunsubscribe":
                    owner._replied()
                    owner._acknowledged(reply[1], False)
                    continue
                continue  # no other push is subscribed to
            if isinstance(reply, ReplyError):
                if owner.on_redirect is not None:
                    # sharded: MOVED for a slot this node does not serve (yet): which channel
                    # is not said, so start over; the broker moves channels by the new map
                    owner.on_redirect()
                    if owner._transport is not None:
                        owner._transport.abort()
                    return
                owner._refused(reply)
                continue
            owner._replied()  # PONG (a list in subscribed mode, a status reply outside it)

    def pause_writing(self) -> None:
        # the reader only writes (UN)SUBSCRIBE and PING: while the buffer drains, skip PINGs
        self.reader.paused = True

    def resume_writing(self) -> None:
        self.reader.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class PubSubReader:
    """Subscriptions of one event loop on one shard, kept alive across Redis outages."""

    def __init__(
        self,
        shard: Shard,
        on_message: MessageCallback,
        config: LayerConfig,
        counters: Counters,
        on_redirect: Callable[[], None] | None = None,
    ) -> None:
        """``on_redirect`` given: sharded pub/sub (``SSUBSCRIBE``, Redis Cluster), and called
        when the node says a channel is not (or no longer) its own: a ``MOVED`` reply, or an
        ``sunsubscribe`` nobody asked for (its slot migrated or the node became a replica)."""
        self.shard = shard
        self.on_redirect = on_redirect
        self._subscribe = b"SSUBSCRIBE" if on_redirect else b"SUBSCRIBE"
        self._unsubscribe = b"SUNSUBSCRIBE" if on_redirect else b"UNSUBSCRIBE"
        self.on_message = on_message
        self.config = config
        self.counters = counters
        #: every pub/sub channel this loop wants, resubscribed after each reconnect
        self.channels: set[bytes] = set()
        self._confirmed: set[bytes] = set()
        #: SUBSCRIBE/UNSUBSCRIBE commands written per channel and not yet acknowledged
        self._inflight: dict[bytes, int] = {}
        self._pending: dict[bytes, asyncio.Future[None]] = {}
        #: the channel of each command written and not yet answered, in order (b"" for PING):
        #: Redis answers in that order, so an error reply names its channel
        self._sent: deque[bytes] = deque()
        #: channels Redis refused (ACL NOPERM...), subscribed again after a backoff
        self._refused_channels: set[bytes] = set()
        self._refusals = 0  # refusals in a row (the backoff's attempt); 0 after a confirmation
        self._retry: asyncio.TimerHandle | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._down = False
        self._connected_once = False
        self._last_read = 0.0
        self.paused = False

    @property
    def connected(self) -> bool:
        """True while a connection is established (subscriptions may still be in flight)."""
        return self._transport is not None

    def start(self) -> None:
        """Start the reader task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"channels_scale pubsub reader shard {self.shard.index}"
            )

    def state(self, channel: bytes) -> SubscriptionState:
        """Where ``channel`` stands: derived from what is wanted and what Redis acknowledged."""
        wanted = channel in self.channels
        if self._inflight.get(channel):
            return SubscriptionState.SUBSCRIBING if wanted else SubscriptionState.UNSUBSCRIBING
        if wanted:
            return (
                SubscriptionState.SUBSCRIBED
                if channel in self._confirmed
                else SubscriptionState.SUBSCRIBING
            )
        return SubscriptionState.UNSUBSCRIBED

    def want(self, channel: bytes) -> asyncio.Future[None] | None:
        """Subscribe to ``channel`` now (the command is written in this call, in order with
        every other subscribe/unsubscribe of this reader); returns a future set once Redis
        confirmed, or None when it is subscribed already."""
        was_wanted = channel in self.channels
        self.channels.add(channel)
        if channel in self._confirmed:
            return None
        self.start()
        future = self._pending.get(channel)
        if future is None:
            future = self._pending[channel] = asyncio.get_running_loop().create_future()
        if not was_wanted or not self._inflight.get(channel):
            # not wanted until now (an UNSUBSCRIBE may be in flight: this SUBSCRIBE follows it
            # on the same connection, so Redis applies both in the order written)
            self._send(self._subscribe, channel)
        return future

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe to ``channel`` and wait (bounded) for Redis to confirm.

        Never raises for Redis outages: the channel is recorded and subscribed on reconnect.
        Returns without waiting when Redis is known to be down, and after ``send_timeout`` at
        the latest.
        """
        future = self.want(channel)
        if future is None or self._down:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.send_timeout):
                await asyncio.shield(future)

    def unsubscribe(self, channel: bytes) -> None:
        """Stop receiving ``channel``: the UNSUBSCRIBE is written in this call (no task), so a
        later :meth:`want` of the same channel is applied after it."""
        self.channels.discard(channel)
        self._confirmed.discard(channel)
        future = self._pending.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)
        self._send(self._unsubscribe, channel)

    def _send(self, command: bytes, channel: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._inflight[channel] = self._inflight.get(channel, 0) + 1
            self._sent.append(channel)
            transport.write(encode(command, channel))

    def _replied(self) -> None:
        """One reply to a command (not a pushed message) arrived."""
        if self._sent:
            self._sent.popleft()

    def _refused(self, error: ReplyError) -> None:
        """An error reply: Redis refused the oldest unanswered command (a SUBSCRIBE denied by
        an ACL without the channel, ``-NOPERM``). Logged once until a subscription succeeds
        again, counted (``pubsub_errors``), and that channel subscribed again after a backoff
        (every other channel of the reader is unaffected: one channel per SUBSCRIBE)."""
        self.counters.pubsub_errors += 1
        if not self._refusals:
            logger.warning(
                "pub/sub on %s: Redis refused a subscription (retrying with backoff): %s",
                self.shard.host.describe(),
                error,
            )
        self._refusals += 1
        channel = self._sent.popleft() if self._sent else b""
        if not channel:  # not a SUBSCRIBE of ours (or out of step): start over
            if self._transport is not None:
                self._transport.abort()
            return
        left = self._inflight.get(channel, 0) - 1
        if left > 0:
            self._inflight[channel] = left
        else:
            self._inflight.pop(channel, None)
        self._refused_channels.add(channel)
        if self._retry is None:
            delay = full_jitter(
                self._refusals - 1, self.config.backoff_base, self.config.backoff_cap
            )
            self._retry = asyncio.get_running_loop().call_later(delay, self._subscribe_refused)

    def _backoff(self) -> float:
        return full_jitter(self._refusals - 1, self.config.backoff_base, self.config.backoff_cap)

    def _subscribe_refused(self) -> None:
        self._retry = None
        refused, self._refused_channels = self._refused_channels, set()
        for channel in refused:
            if channel in self.channels and not self._inflight.get(channel):
                self._send(self._subscribe, channel)

    def _acknowledged(self, channel: bytes, subscribed: bool) -> None:
        """One SUBSCRIBE/UNSUBSCRIBE reply for ``channel``: confirmed only when it is the reply
        to the last command written for it and the channel is still wanted."""
        left = self._inflight.get(channel, 0) - 1
        if left < 0 and not subscribed and self.on_redirect is not None:
            self._confirmed.discard(channel)  # dropped by the server: the broker moves it
            self.on_redirect()
            return
        if left > 0:
            self._inflight[channel] = left
            return
        self._inflight.pop(channel, None)
        if not subscribed or channel not in self.channels:
            return
        self._refusals = 0
        self._confirmed.add(channel)
        future = self._pending.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def _run(self) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            if self._refusals:  # the last connection was dropped for a refusal: back off
                await asyncio.sleep(
                    full_jitter(
                        self._refusals - 1, self.config.backoff_base, self.config.backoff_cap
                    )
                )
            protocol = _Protocol(self)
            try:
                transport = await open_connection(
                    self.shard.host, protocol, 3 * self.config.health_check_interval
                )
            except Exception as exc:
                # An outage, or anything else (a bad TLS file, a sentinel's odd answer): the
                # reader must never end (receive() would wait forever), so every error is
                # logged once per outage and retried with backoff.
                if not self._down:
                    if isinstance(exc, REDIS_DOWN_ERRORS):
                        logger.warning("pub/sub on %s down: %s", self.shard.host.describe(), exc)
                    else:
                        logger.error(
                            "pub/sub on %s: cannot connect (retrying with backoff): %r",
                            self.shard.host.describe(),
                            exc,
                        )
                if not isinstance(exc, REDIS_DOWN_ERRORS):
                    self.counters.pubsub_errors += 1
                self._down = True
                await asyncio.sleep(
                    full_jitter(attempt, self.config.backoff_base, self.config.backoff_cap)
                )
                attempt += 1
                continue
            attempt = 0
            if self._connected_once:
                self.counters.reconnects += 1
                logger.warning("pub/sub on %s reconnected", self.shard.host.describe())
            self._connected_once = True
            self._down = False
            self._transport = transport
            self._last_read = loop.time()
            health = loop.create_task(self._health(transport))
            try:
                if self.channels:
                    # One channel per command, all in one write: a refused one (ACL) then
                    # fails alone, and sharded pub/sub needs one slot per SSUBSCRIBE anyway.
                    for channel in self.channels:
                        self._inflight[channel] = 1
                        self._sent.append(channel)
                    command = self._subscribe
                    transport.write(b"".join(encode(command, ch) for ch in self.channels))
                reason = await protocol.closed
                logger.warning(
                    "pub/sub on %s lost: %s",
                    self.shard.host.describe(),
                    reason or "connection closed by server",
                )
            finally:
                health.cancel()
                self._transport = None
                self._confirmed.clear()
                self._inflight.clear()
                self._sent.clear()
                self._refused_channels.clear()  # all subscribed again on the next connection
                if self._retry is not None:
                    self._retry.cancel()
                    self._retry = None
                transport.abort()

    async def _health(self, transport: asyncio.WriteTransport) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.health_check_interval
        ping = encode(b"PING")
        while True:
            await asyncio.sleep(interval)
            if loop.time() - self._last_read > 3 * interval:
                logger.warning("pub/sub on %s silent: reconnecting", self.shard.host.describe())
                transport.abort()
                return
            if transport.is_closing():
                return
            if not self.paused:
                self._sent.append(b"")
                transport.write(ping)

    async def aclose(self) -> None:
        """Stop the reader and close its connection."""
        task, self._task = self._task, None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()
