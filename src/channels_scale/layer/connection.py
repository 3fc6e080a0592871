"""Connections to one Redis shard, and the bounded retry used by every sending command.

Four kinds of connection per shard and event loop, for four different jobs:

- one auto-pipelining connection (:class:`~.pipe.CommandPipe`) for the hot sending commands
  (``PUBLISH`` to an inbox, the ``group_send`` script, queue pushes): :meth:`Shard.execute`;

- a pool of ``pool_size`` connections for the other commands (group records, flush, history
  reads, presence), guarded
  by a semaphore of the same size: a burst of 1,000 concurrent sends waits for a free connection
  instead of raising ``MaxConnectionsError`` as redis-py 8's default pool (100 connections) does.
  (redis-py's ``BlockingConnectionPool`` does the same but costs ~2x per command: a Condition and
  a timeout per checkout.)
- one dedicated pub/sub connection (see :mod:`.reader`), created with *no* socket timeout:
  redis-py 8's default ``socket_timeout`` of 5 s kills idle blocking reads (channels_redis issue
  #422); the reader detects dead connections with its own PING health check instead.
- a pool for blocking pops of normal channels (``BLPOP`` with a short server-side timeout and a
  socket timeout just above it), kept apart so long blocking calls never starve the command pool.

redis-py's own retries are switched off (``Retry(NoBackoff(), 0)``): :meth:`Shard.call` and
:meth:`Shard.execute` retry with exponential backoff and full jitter for at most
``send_timeout``, then raise :class:`~channels_scale.exceptions.LayerUnavailable`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from channels_scale.exceptions import LayerUnavailable
from channels_scale.layer.backoff import full_jitter
from channels_scale.layer.config import HostConfig, LayerConfig
from channels_scale.layer.pipe import CommandPipe, ReplyError, encode
from channels_scale.layer.sentinel import is_sentinel_url, master_connection_class
from channels_scale.layer.stats import Counters
from channels_scale.layer.wire import connection_options

logger = logging.getLogger("channels_scale.layer")

T = TypeVar("T")

#: errors that mean "Redis is not reachable right now" (retry), as opposed to a bad command
REDIS_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError while Redis restarts
    redis.exceptions.TimeoutError,
    OSError,
    asyncio.TimeoutError,
)

#: server-side timeout of one BLPOP, seconds; a receive() loops over them, never raising
BLOCKING_POP_TIMEOUT = 2.0


class Script:
    """A Lua script sent as ``EVALSHA`` (``EVAL`` once after Redis lost its script cache)."""

    __slots__ = ("body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body.encode()
        self.sha = hashlib.sha1(self.body).hexdigest().encode()


def _pool_kwargs(host: HostConfig, config: LayerConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_keepalive": True,
        "socket_connect_timeout": 5.0,
        "socket_timeout": 10.0,
        "max_connections": config.pool_size,
        "retry": Retry(NoBackoff(), 0),
    }
    kwargs.update(host.kwargs)
    if kwargs.get("max_connections") is None:
        kwargs["max_connections"] = config.pool_size
    return kwargs


def _make_pool(cls: type[ConnectionPool], host: HostConfig, kwargs: dict[str, Any]) -> Any:
    if is_sentinel_url(host.url):
        # connections ask Sentinel for the master each time they connect (see .sentinel)
        options = connection_options(host)
        spec = options.pop("sentinel")
        for name in ("require_master", "host", "port", "path"):
            options.pop(name, None)
        timeout = float(kwargs.get("socket_connect_timeout") or 5.0)
        return cls(
            connection_class=master_connection_class(spec, timeout / (len(spec.sentinels) + 1)),
            **{**options, **kwargs},
        )
    if host.url is not None:
        return cls.from_url(host.url, **kwargs)
    return cls(**kwargs)


class Shard:
    """One Redis host as seen from one event loop: pools plus the retrying :meth:`call`."""

    def __init__(self, index: int, host: HostConfig, config: LayerConfig, counters: Counters):
        self.index = index
        self.host = host
        self.config = config
        self.counters = counters
        kwargs = _pool_kwargs(host, config)
        self.pool: ConnectionPool = _make_pool(ConnectionPool, host, kwargs)
        # at most max_connections commands in flight: callers queue here, the pool never overflows
        self._slots = asyncio.Semaphore(int(kwargs["max_connections"]))
        self.client = Redis(connection_pool=self.pool)
        blocking_kwargs = {
            **kwargs,
            "socket_timeout": BLOCKING_POP_TIMEOUT + 10.0,
            "max_connections": 100_000,
        }
        self.blocking_pool: ConnectionPool = _make_pool(ConnectionPool, host, blocking_kwargs)
        self.blocking_client = Redis(connection_pool=self.blocking_pool)
        self.pipe = CommandPipe(host, config.send_timeout)
        #: the master named by Sentinel: a READONLY reply means "failed over", retried
        self.sentinel = is_sentinel_url(host.url)

    async def call(self, operation: Callable[[Redis], Awaitable[T]], what: str) -> T:
        """Run ``operation(client)``, retrying while Redis is unreachable, for ``send_timeout``.

        Raises:
            LayerUnavailable: Redis was unreachable for the whole ``send_timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.send_timeout
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            try:
                async with asyncio.timeout(max(remaining, 0.001)), self._slots:
                    return await operation(self.client)
            except REDIS_DOWN_ERRORS as exc:
                await self._wait_to_retry(what, exc, deadline, attempt)
                attempt += 1

    async def _wait_to_retry(
        self, what: str, exc: BaseException, deadline: float, attempt: int
    ) -> None:
        """Sleep a full-jitter backoff before the next try, or raise once ``deadline`` passed.

        Raises:
            LayerUnavailable: the deadline (``send_timeout`` after the first try) has passed.
        """
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            self.counters.send_failed += 1
            raise LayerUnavailable(
                f"{what}: Redis at {self.host.describe()} unreachable for "
                f"{self.config.send_timeout:g} s ({exc})"
            ) from exc
        self.counters.send_retries += 1
        delay = full_jitter(attempt, self.config.backoff_base, self.config.backoff_cap)
        await asyncio.sleep(min(delay, remaining))

    async def execute(self, what: str, data: bytes) -> Any:
        """Send one RESP-encoded command on the pipelined connection and return its reply.

        Retries while Redis is unreachable, for ``send_timeout``, like :meth:`call`.

        Raises:
            LayerUnavailable: Redis was unreachable for the whole ``send_timeout``.
            redis.exceptions.ResponseError: Redis answered with an error.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            reply = await self._request(data)
        except REDIS_DOWN_ERRORS as exc:
            # the deadline counts from the first try (its reply may have been late, not lost:
            # the pipe's watchdog gave up after send_timeout), so retries never extend it
            reply = await self._execute_retrying(
                what, data, exc, started + self.config.send_timeout
            )
        if type(reply) is ReplyError:
            raise redis.exceptions.ResponseError(str(reply))
        return reply

    async def _execute_retrying(
        self, what: str, data: bytes, first: BaseException, deadline: float
    ) -> Any:
        loop = asyncio.get_running_loop()
        attempt = 0
        exc = first
        while True:
            await self._wait_to_retry(what, exc, deadline, attempt)
            attempt += 1
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                    return await self._request(data)
            except REDIS_DOWN_ERRORS as error:
                # Our own deadline cutting an attempt short says nothing about Redis: keep the
                # last real error (e.g. WRONGPASS) for the LayerUnavailable message.
                if not (isinstance(error, TimeoutError) and not str(error)):
                    exc = error

    async def _request(self, data: bytes) -> Any:
        """One pipelined call; a ``LOADING`` reply (Redis restarting, reading its data back)
        raises ``BusyLoadingError`` so that it is retried like an unreachable Redis, as redis-py
        does on the other path (it escaped as a ResponseError and killed consumers: tests/faults).
        """
        reply = await self.pipe.request(data)
        if type(reply) is ReplyError and str(reply).startswith("LOADING"):
            raise redis.exceptions.BusyLoadingError(str(reply))
        if type(reply) is ReplyError and self.sentinel and str(reply).startswith("READONLY"):
            # the master was demoted under us: reconnect (asking Sentinel again) and retry
            self.pipe.drop()
            raise redis.exceptions.ConnectionError(f"{self.host.describe()}: {reply}")
        return reply

    async def run_script(
        self, what: str, script: Script, keys: list[bytes | str], args: list[Any]
    ) -> Any:
        """Run ``script`` with ``keys`` and ``args`` on the pipelined connection (see
        :meth:`execute`); ``EVAL`` once when Redis does not know the script (restarted)."""
        try:
            return await self.execute(what, encode(b"EVALSHA", script.sha, len(keys), *keys, *args))
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.execute(what, encode(b"EVAL", script.body, len(keys), *keys, *args))

    async def aclose(self) -> None:
        """Close every pooled connection (the pub/sub reader closes its own)."""
        self.pipe.close()
        for client in (self.client, self.blocking_client):
            try:
                await client.aclose(close_connection_pool=True)
            except Exception:  # closing is best effort: the server may be gone
                logger.debug("error closing Redis pool", exc_info=True)
