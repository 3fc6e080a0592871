"""Connections per user across worker processes, in Redis, with entries that expire.

Per user, a sorted set ``<prefix>:<user>``: connection (channel name) → the time its entry
expires (ms). A connect removes expired entries, counts the rest and adds itself only under the
limit (one script call); a disconnect removes its entry. Each process refreshes its own entries
every ``ttl / 3`` seconds (one task per event loop, one call per user), so the entries of a worker
that died (SIGKILL) expire within ``ttl`` seconds and stop counting.

Redis unreachable or slow: the connection is let in (the per-process bound of
:class:`~channels_scale.consumers.userlimits.ConnectionCounter` still applies) and a warning is
logged at most once a minute. A Redis outage never closes a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

logger = logging.getLogger("channels_scale.consumers")

__all__ = ["ConnectionRegistry", "registry_for"]

# KEYS: the user's set. ARGV: now ms, limit, ttl ms, connection. 1: added; 0: at the limit.
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: the user's set. ARGV: expiry ms, ttl ms, then connections: refreshes those still there.
_REFRESH = """
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"""


class ConnectionRegistry:
    """At most ``limit`` live connections per user across every process using this Redis.

    Args:
        redis: a ``redis.asyncio.Redis`` client of this event loop.
        ttl: seconds an entry lives without a refresh (the bound for a dead worker's entries).
        prefix: key prefix.
        timeout: seconds to wait for Redis before letting the connection in.
    """

    def __init__(
        self, redis: Any, ttl: float = 60.0, prefix: str = "csconn", timeout: float = 0.5
    ) -> None:
        self.redis = redis
        self.ttl = ttl
        self.prefix = prefix
        self.timeout = timeout
        self.local: dict[str, set[str]] = {}  # user → this process's connections
        self._task: asyncio.Task[None] | None = None
        self._warned = 0.0

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            logger.warning("connections per user: %s failed, Redis unreachable", what)

    async def acquire(self, user: str, conn: str, limit: int) -> bool:
        """Count ``conn`` for ``user``; False (nothing counted) when the user is at the limit."""
        key = f"{self.prefix}:{user}"
        ttl_ms = int(self.ttl * 1000)
        try:
            added = await asyncio.wait_for(
                self.redis.eval(_ACQUIRE, 1, key, int(time.time() * 1000), limit, ttl_ms, conn),
                self.timeout,
            )
        except Exception:
            self._warn("acquire")
            return True
        if not int(added):
            return False
        self.local.setdefault(user, set()).add(conn)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._beat(), name="channels_scale connections per user"
            )
        return True

    async def release(self, user: str, conn: str) -> None:
        """Stop counting ``conn`` (never raises; on a Redis outage the entry expires)."""
        conns = self.local.get(user)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.local[user]
        try:
            await asyncio.wait_for(self.redis.zrem(f"{self.prefix}:{user}", conn), self.timeout)
        except Exception:
            self._warn("release")

    async def _beat(self) -> None:
        ttl_ms = int(self.ttl * 1000)
        while self.local:
            await asyncio.sleep(self.ttl / 3)
            expires = int(time.time() * 1000) + ttl_ms
            for user, conns in list(self.local.items()):
                try:
                    key = f"{self.prefix}:{user}"
                    await self.redis.eval(_REFRESH, 1, key, expires, ttl_ms, *conns)
                except Exception:  # an outage must not stop the beat
                    self._warn("refresh")

    async def stop(self) -> None:
        """Cancel the refresh task (tests, shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, ConnectionRegistry]] = (
    weakref.WeakKeyDictionary()
)


def registry_for(url: str) -> ConnectionRegistry:
    """The registry of Redis ``url`` on the running event loop."""
    import redis.asyncio

    per_loop = _registries.setdefault(asyncio.get_running_loop(), {})
    registry = per_loop.get(url)
    if registry is None:
        client = redis.asyncio.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
        )
        registry = per_loop[url] = ConnectionRegistry(client)
    return registry
