"""Per-user message rate across workers, on a real Redis (two worker processes)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import redis.asyncio

from channels_scale.consumers.userlimits import ConnectionCounter, UserRateLimiter
from channels_scale.net import free_port, timeout_factor

# One "worker": 60 messages of alice as fast as it can, then prints how many were allowed.
WORKER = """
import asyncio, sys
import redis.asyncio
from channels_scale.consumers.userlimits import UserRateLimiter

async def main():
    client = redis.asyncio.Redis.from_url(sys.argv[1])
    limiter = UserRateLimiter(client, limit=30, window=60, prefix=sys.argv[2])
    allowed = [await limiter.allow("alice") for _ in range(60)]
    print(sum(allowed), limiter.lease)
    await client.aclose()

asyncio.run(main())
"""


def test_two_worker_processes_share_one_budget(shared_redis: Any) -> None:
    prefix = "t" + uuid.uuid4().hex[:12]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, shared_redis.url, prefix],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [w.communicate(timeout=60 * timeout_factor())[0].split() for w in workers]
    allowed = [int(r[0]) for r in results]
    lease = int(results[0][1])
    assert lease == 3  # a tenth of the limit: one EVALSHA per 3 messages
    # Each would allow 30 alone: together never more than the limit in the window; a worker's
    # unspent lease is at most lost to the other.
    assert 30 - 2 * lease <= sum(allowed) <= 30


async def test_one_redis_call_per_lease_not_per_message(shared_redis: Any) -> None:
    client = redis.asyncio.Redis.from_url(shared_redis.url)
    limiter = UserRateLimiter(client, limit=100, window=60, prefix="t" + uuid.uuid4().hex[:12])
    await limiter.allow("warm")  # loads the script (EVALSHA, NOSCRIPT, SCRIPT LOAD at most)
    stats = await client.info("commandstats")
    before = {k: v["calls"] for k, v in stats.items()}
    assert all([await limiter.allow("alice") for _ in range(50)])
    stats = await client.info("commandstats")
    calls = {k: v["calls"] - before.get(k, 0) for k, v in stats.items()}
    # lease 10: five EVALSHA for 50 messages (the INCRBY inside counted too), no EVAL
    assert calls["cmdstat_evalsha"] == 5 and calls.get("cmdstat_eval", 0) == 0, calls
    assert calls["cmdstat_incrby"] == 5, calls
    await client.aclose()


async def test_other_users_have_their_own_budget(shared_redis: Any) -> None:
    client = redis.asyncio.Redis.from_url(shared_redis.url)
    limiter = UserRateLimiter(client, limit=2, window=60, prefix="t" + uuid.uuid4().hex[:12])
    assert [await limiter.allow("alice") for _ in range(3)] == [True, True, False]
    assert await limiter.allow("bob")
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
