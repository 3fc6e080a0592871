"""Per-user limits: a message rate across worker processes (Redis) and connections per user.

**Message rate per user** (:class:`UserRateLimiter`): at most ``limit`` messages per ``window``
seconds per user, counted in Redis so that every worker shares the budget. The fast path is
local: a worker takes a *lease* of several messages at once (one ``EVAL`` per lease, not per
message) from the user's counter of the current window, and spends it locally. Cost: leased
messages a worker does not spend are lost to the others until the window ends, so a user spread
over W workers may be refused up to ``W * lease`` messages early; never allowed more than
``limit``. Once Redis said no for a window, the worker refuses locally until that window ends.

Redis unreachable (or slow past ``timeout``): the limiter lets the message through (the
per-connection bucket still applies) and logs a warning at most once per ``window``. A Redis
outage never closes a connection. No Redis configured at all (e.g. Channels' in-memory layer in
development): each process counts alone.

**Connections per user** (:class:`ConnectionCounter`): counted in this process first (no I/O);
across workers by :mod:`channels_scale.consumers.userconns` (Redis).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

logger = logging.getLogger("channels_scale.consumers")

__all__ = ["ConnectionCounter", "UserRateLimiter", "limiter_for"]

# KEYS: the user's counter of the window. ARGV: lease size, key ttl ms, limit.
# Returns how many messages of the lease were granted (0: the user is over the limit).
_LEASE = """
local lease = tonumber(ARGV[1])
local n = redis.call('INCRBY', KEYS[1], lease)
if n == lease then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local before = n - lease
local limit = tonumber(ARGV[3])
if before >= limit then return 0 end
return math.min(lease, limit - before)
"""


class UserRateLimiter:
    """``limit`` messages per ``window`` seconds per user, shared by every worker through Redis.

    Args:
        redis: a ``redis.asyncio.Redis`` client (of this event loop); None: count in this
            process only.
        limit: messages per window per user.
        window: seconds.
        prefix: key prefix (keys: ``<prefix>:<user>:<window number>``).
        timeout: seconds to wait for Redis before letting the message through.
    """

    def __init__(
        self,
        redis: Any,
        limit: int,
        window: float = 60.0,
        prefix: str = "csrate",
        timeout: float = 0.5,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a user rate limit needs limit >= 1 and window > 0")
        self.redis = redis
        self.limit = limit
        self.window = window
        self.prefix = prefix
        self.timeout = timeout
        self.lease = max(1, min(10, limit // 10))
        # EVALSHA (redis-py loads the script again after a NOSCRIPT), not the body every call
        self._lease_script: Any = None if redis is None else redis.register_script(_LEASE)
        # user → (window number, messages leased and not spent, refused for this window)
        self._local: dict[str, tuple[int, int, bool]] = {}
        self._warned_window = -1

    async def allow(self, user: str) -> bool:
        """Spend one message of ``user``'s budget; False when the user is over the limit."""
        number = int(time.time() // self.window)
        entry = self._local.get(user)
        if entry is not None and entry[0] == number:
            _, left, refused = entry
            if left > 0:
                self._local[user] = (number, left - 1, False)
                return True
            if refused:
                return False
        if len(self._local) > 10_000:  # entries of past windows: drop them all at once
            self._local = {k: v for k, v in self._local.items() if v[0] == number}
        if self.redis is None:  # no Redis: this process counts alone
            granted = self.limit if entry is None or entry[0] != number else 0
            return self._spend(user, number, granted)
        key = f"{self.prefix}:{user}:{number}"
        ttl_ms = int(self.window * 2000)
        try:
            granted = int(
                await asyncio.wait_for(
                    self._lease_script(keys=[key], args=[self.lease, ttl_ms, self.limit]),
                    self.timeout,
                )
            )
        except Exception:
            if self._warned_window != number:
                self._warned_window = number
                logger.warning("per-user rate limit: Redis unreachable, allowing", exc_info=True)
            return True
        return self._spend(user, number, granted)

    def _spend(self, user: str, number: int, granted: int) -> bool:
        if granted <= 0:
            self._local[user] = (number, 0, True)
            return False
        self._local[user] = (number, granted - 1, False)
        return True


_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, UserRateLimiter]] = (
    weakref.WeakKeyDictionary()
)


def limiter_for(url: str | None, limit: int, window: float) -> UserRateLimiter:
    """The limiter of (Redis ``url``, ``limit``, ``window``) on the running event loop.

    ``url`` None: no Redis; the limit is counted in this process only.
    """
    import redis.asyncio

    loop = asyncio.get_running_loop()
    per_loop = _limiters.setdefault(loop, {})
    key = (url, limit, window)
    limiter = per_loop.get(key)
    if limiter is None:
        client = None
        if url is None:
            logger.warning("per-user rate limit: no Redis configured, counting per process")
        else:
            client = redis.asyncio.Redis.from_url(
                url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
            )
        limiter = per_loop[key] = UserRateLimiter(client, limit, window)
    return limiter


class ConnectionCounter:
    """Open connections per user in this process, at most ``limit`` each (pure: no I/O)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def acquire(self, user: str, limit: int) -> bool:
        """Count one more connection of ``user``; False (nothing counted) at the limit."""
        count = self.open.get(user, 0)
        if count >= limit:
            return False
        self.open[user] = count + 1
        return True

    def release(self, user: str) -> None:
        count = self.open.get(user, 0) - 1
        if count > 0:
            self.open[user] = count
        else:
            self.open.pop(user, None)


#: this process's connections per user (every consumer class shares it)
CONNECTIONS = ConnectionCounter()
