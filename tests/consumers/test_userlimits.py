"""Per-user message rate across workers, on a real Redis (two limiters = two worker processes)."""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio

from channels_scale.consumers.userlimits import ConnectionCounter, UserRateLimiter
from channels_scale.net import free_port


async def test_two_workers_share_one_budget(shared_redis: Any) -> None:
    prefix = "t" + uuid.uuid4().hex[:12]
    clients = [redis.asyncio.Redis.from_url(shared_redis.url) for _ in range(2)]
    workers = [UserRateLimiter(c, limit=30, window=60, prefix=prefix) for c in clients]
    assert workers[0].lease == 3  # a lease is a tenth of the limit: one EVAL per 3 messages
    allowed = [await workers[i % 2].allow("alice") for i in range(100)]
    # Never more than the limit in the window; leases left unspent cost at most one lease each.
    assert 30 - 2 * 3 <= sum(allowed) <= 30
    assert not any(allowed[40:])
    assert await workers[1].allow("bob")  # another user has their own budget
    for client in clients:
        await client.aclose()


async def test_redis_unreachable_lets_messages_through() -> None:
    client = redis.asyncio.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2
    )
    limiter = UserRateLimiter(client, limit=1, window=60, timeout=0.5)
    assert [await limiter.allow("alice") for _ in range(3)] == [True, True, True]
    await client.aclose()


def test_connection_counter() -> None:
    counter = ConnectionCounter()
    assert counter.acquire("a", 2) and counter.acquire("a", 2)
    assert not counter.acquire("a", 2)
    assert counter.acquire("b", 2)
    counter.release("a")
    assert counter.acquire("a", 2)
    for _ in range(2):
        counter.release("a")
    counter.release("b")
    assert counter.open == {}


async def test_without_redis_each_process_counts_alone() -> None:
    limiter = UserRateLimiter(None, limit=3, window=60)
    assert [await limiter.allow("alice") for _ in range(5)] == [True, True, True, False, False]
    assert await limiter.allow("bob")
