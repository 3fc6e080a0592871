"""What our consumers do at their doors: failures, limits, authorization (the :class:`Guard` base).

:class:`~channels_scale.consumers.AsyncWebsocketConsumer` inherits these; each is documented with
its close code in docs/close-codes.md and counted in
:data:`channels_scale.consumers.limits.COUNTERS`.

- **Failures never leak.** Whatever a handler raises (either source: websocket or layer), the
  consumer closes the connection with :meth:`Guard.close_code_for` (1008 for
  :class:`~channels_scale.consumers.limits.ProtocolViolation`, 1013 for a slow client, 1011 for
  anything else: our fault, logged with its traceback), then runs its own
  ``websocket_disconnect`` (groups, presence, ``disconnect()``) unless that was already running.
  Nothing propagates to the ASGI server, so no traceback is logged for a client's bad input.
- **Slow clients** (:mod:`.outgoing`): every message goes through a per-connection queue bounded
  in bytes (``settings.WEBSOCKET_MAX_OUTGOING_BYTES``, default 1 MiB; 0 turns the queue off);
  past it the client is closed with 1013.
- **Rates**: :attr:`Guard.message_rate` / :attr:`Guard.message_burst` (per connection, a local
  token bucket) and :attr:`Guard.user_message_limit` per :attr:`Guard.user_message_window`
  seconds (per user across workers, :mod:`.userlimits`); over either: close 4429.
- **Connections per user**: :attr:`Guard.max_connections_per_user` across workers
  (:mod:`.userconns`, Redis, entries that expire when a worker dies; without Redis: per
  process); over it: the handshake is accepted, then closed with 4429 (so a browser sees the
  code).
- **Idle timeout**: :attr:`Guard.idle_timeout` seconds without a frame from the client: close
  4408.
- **Authorization**: :meth:`Guard.authorize` (``"join"`` or ``"publish"`` a group) decides for
  the class's ``groups`` at connect (refused: close 4403) and for :meth:`Guard.join_group`; an
  application checks ``"publish"`` where it publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from channels.exceptions import StopConsumer
from channels.generic import websocket as channels_websocket
from django.conf import settings

from channels_scale.closecodes import CloseCode
from channels_scale.consumers.direct import sink_writer
from channels_scale.consumers.limits import COUNTERS, ProtocolViolation, TokenBucket
from channels_scale.consumers.outgoing import DEFAULT_MAX_OUTGOING_BYTES, OutgoingQueue, SlowClient
from channels_scale.consumers.userconns import registry_for
from channels_scale.consumers.userlimits import CONNECTIONS, UserRateLimiter, limiter_for
from channels_scale.layer.cluster import is_cluster_url

logger = logging.getLogger("channels_scale.consumers")

__all__ = ["Guard", "Refused"]

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]

# Seconds the queued frames (and the close frame) get to reach the server when a consumer ends.
_FLUSH_TIMEOUT = 2.0


class Refused(Exception):
    """A limit ends the connection: close with ``code`` and ``reason``; count ``counter``."""

    def __init__(self, code: int, reason: str, counter: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.counter = counter


def limits_redis_url() -> str | None:
    """The Redis of per-user limits: ``settings.CHANNELS_SCALE_LIMITS_REDIS_URL``, else the
    default channel layer's first host; None (each process counts alone) when neither is set.
    """
    url = getattr(settings, "CHANNELS_SCALE_LIMITS_REDIS_URL", None)
    if url:
        return str(url)
    layers = getattr(settings, "CHANNEL_LAYERS", {})
    hosts = layers.get("default", {}).get("CONFIG", {}).get("hosts") or []
    if hosts:
        first = hosts[0]
        if isinstance(first, str):
            # a plain Redis client cannot use a cluster (its keys would get MOVED): without
            # CHANNELS_SCALE_LIMITS_REDIS_URL each process counts alone
            return None if is_cluster_url(first) else first
        if isinstance(first, dict) and isinstance(first.get("address"), str):
            return str(first["address"])
    return None


class Guard(channels_websocket.AsyncWebsocketConsumer):  # type: ignore[misc]
    """Failure handling, limits and authorization of our consumers (see the module docstring)."""

    #: messages per second per connection (token bucket); None: no limit
    message_rate: ClassVar[float | None] = None
    #: messages a connection may send at once before the rate applies
    message_burst: ClassVar[int] = 20
    #: messages per :attr:`user_message_window` seconds per user, across workers; None: none
    user_message_limit: ClassVar[int | None] = None
    user_message_window: ClassVar[float] = 60.0
    #: open connections per user across workers (Redis; else per process); None: no limit
    max_connections_per_user: ClassVar[int | None] = None
    #: seconds without a frame from the client before closing with 4408; None: never
    idle_timeout: ClassVar[float | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._disconnecting = False  # websocket_disconnect started (it releases everything)
        self._accepted = False  # accept() was called (a second one would be a protocol error)
        self._outgoing: OutgoingQueue | None = None
        self._connection_user: str | None = None  # counted in CONNECTIONS (and Redis)
        self._connection_id = ""  # its entry in the Redis registry
        rate = self.message_rate
        self._bucket = None if rate is None else TokenBucket(rate, self.message_burst)
        self._limited = self._bucket is not None or self.user_message_limit is not None
        self._user_limiter: UserRateLimiter | None = None

    # -- hooks --------------------------------------------------------------------------------

    async def authorize(self, action: str, group: str) -> bool:
        """Whether this connection may ``action`` (``"join"`` or ``"publish"``) ``group``.

        Default: yes. Called for each of the class's ``groups`` at connect and by
        :meth:`join_group`; an application calls it with ``"publish"`` where it publishes.
        """
        return True

    def limit_user(self) -> str | None:
        """The key per-user limits count under: the logged-in user's pk; None: no per-user limit."""
        user = self.scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return str(user.pk)

    def close_code_for(self, exc: Exception) -> tuple[int, str]:
        """The close code and reason for a handler's exception (see the module docstring)."""
        if isinstance(exc, Refused):
            return exc.code, exc.reason
        if isinstance(exc, ProtocolViolation):
            return int(CloseCode.POLICY_VIOLATION), str(exc)
        if isinstance(exc, SlowClient):
            return int(CloseCode.TRY_AGAIN_LATER), "too slow"
        return int(CloseCode.INTERNAL_ERROR), "internal error"

    async def join_group(self, group: str) -> bool:
        """Join ``group`` if :meth:`authorize` allows it; otherwise close 4403 and return False."""
        if not await self.authorize("join", group):
            await self.forbid(group)
            return False
        await self.channel_layer.group_add(group, self.channel_name)
        return True

    async def forbid(self, group: str) -> None:
        """Close with 4403 (the handshake is accepted first, so the client sees the code)."""
        COUNTERS["forbidden"] += 1
        if not self._accepted:
            await self.accept()
        await self.close(int(CloseCode.FORBIDDEN), "forbidden")

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """Accept the handshake (Channels' ``accept``), remembering that it was."""
        self._accepted = True
        await super().accept(subprotocol=subprotocol, headers=headers)

    # -- connect: connections per user, then the class's groups --------------------------------

    async def websocket_connect(self, message: Message) -> None:
        limit = self.max_connections_per_user
        user = None if limit is None else self.limit_user()
        if (
            limit is not None
            and user is not None
            and not await self._acquire_connection(user, limit)
        ):
            COUNTERS["connections_per_user"] += 1
            await self.accept()
            await self.close(int(CloseCode.RATE_LIMITED), "too many connections")
            return
        for group in self.groups:
            if not await self.authorize("join", group):
                await self.forbid(group)
                return
        await super().websocket_connect(message)

    async def _acquire_connection(self, user: str, limit: int) -> bool:
        # This process first (no I/O), then every worker's through Redis when there is one.
        if not CONNECTIONS.acquire(user, limit):
            return False
        url = limits_redis_url()
        self._connection_id = uuid.uuid4().hex
        if url is not None and not await registry_for(url).acquire(
            user, self._connection_id, limit
        ):
            CONNECTIONS.release(user)
            return False
        self._connection_user = user
        return True

    async def check_rate(self) -> None:
        """Spend one message of the connection's and the user's budgets.

        Raises:
            Refused: over either (the consumer closes with 4429).
        """
        bucket = self._bucket
        if bucket is not None and not bucket.take():
            raise Refused(int(CloseCode.RATE_LIMITED), "too many messages", "rate_connection")
        limit = self.user_message_limit
        if limit is not None:
            user = self.limit_user()
            if user is not None:
                limiter = self._user_limiter
                if limiter is None:  # looked up once per connection, not per frame
                    url = limits_redis_url()
                    limiter = limiter_for(url, limit, self.user_message_window)
                    self._user_limiter = limiter
                if not await limiter.allow(user):
                    raise Refused(int(CloseCode.RATE_LIMITED), "too many messages", "rate_user")

    # -- the connection's life: outgoing queue, idle timeout, failure, end --------------------

    def _open_outgoing(self, send: Send) -> Send:
        limit = getattr(settings, "WEBSOCKET_MAX_OUTGOING_BYTES", DEFAULT_MAX_OUTGOING_BYTES)
        self._server_send = send
        if not limit:
            return send
        self._outgoing = OutgoingQueue(send, int(limit), sink_writer(self.scope))
        return self._outgoing.send

    async def _receive_frame(self, receive: Receive) -> Message:
        idle = self.idle_timeout
        if idle is None:
            return await receive()
        try:
            async with asyncio.timeout(idle):
                return await receive()
        except TimeoutError:
            raise Refused(int(CloseCode.IDLE_TIMEOUT), "idle timeout", "idle_timeout") from None

    async def _fail(self, exc: Exception) -> None:
        """Close for ``exc`` and release what the connection holds (never raises)."""
        code, reason = self.close_code_for(exc)
        reason = reason.encode("utf-8", "replace")[:120].decode("utf-8", "ignore")
        if code == CloseCode.INTERNAL_ERROR:
            COUNTERS["internal_error"] += 1
            logger.error("%s failed; closing with 1011", type(self).__name__, exc_info=exc)
        else:
            counter = exc.counter if isinstance(exc, Refused) else None
            if counter is None:
                counter = "slow_client" if isinstance(exc, SlowClient) else "protocol_violation"
            COUNTERS[counter] += 1
            logger.info("%s closing with %d: %s", type(self).__name__, code, reason)
        close = {"type": "websocket.close", "code": code, "reason": reason}
        outgoing = self._outgoing
        send = self.base_send
        if isinstance(exc, SlowClient) and outgoing is not None:
            # The queue is full of frames the client does not read: drop them and hand the
            # close frame to the server itself.
            await outgoing.abort()
            send = self._server_send
        try:
            # Bounded: the server's send waits while the client does not read; after the
            # timeout the consumer ends and the server closes the transport.
            await asyncio.wait_for(send(close), _FLUSH_TIMEOUT)
        except Exception:
            logger.debug("close after a failure could not be sent", exc_info=True)
        if not self._disconnecting:
            try:
                await self.dispatch({"type": "websocket.disconnect", "code": code})
            except StopConsumer:
                pass
            except Exception:
                logger.exception("%s: disconnect after a failure raised", type(self).__name__)

    async def _finish(self) -> None:
        user, self._connection_user = self._connection_user, None
        if user is not None:
            CONNECTIONS.release(user)
            url = limits_redis_url()
            if url is not None:
                await registry_for(url).release(user, self._connection_id)
        outgoing = self._outgoing
        if outgoing is not None:
            with contextlib.suppress(Exception):
                await outgoing.flush(_FLUSH_TIMEOUT)
            await outgoing.abort()
