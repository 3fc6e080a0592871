"""Connections per user across worker processes (Redis), and a dead worker's entries expiring."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from typing import Any

import redis.asyncio

from channels_scale.consumers.userconns import ConnectionRegistry
from channels_scale.net import free_port, timeout_factor

# A "worker" holding two connections of alice (limit 3), until it is killed.
HOLDER = """
import asyncio, sys
import redis.asyncio
from channels_scale.consumers.userconns import ConnectionRegistry

async def main():
    registry = ConnectionRegistry(redis.asyncio.Redis.from_url(sys.argv[1]), ttl=1.0,
                                  prefix=sys.argv[2])
    got = [await registry.acquire("alice", f"held-{i}", 3) for i in range(2)]
    print(got, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_limit_across_processes_and_a_dead_workers_entries_expire(
    shared_redis: Any,
) -> None:
    prefix = "t" + uuid.uuid4().hex[:12]
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, shared_redis.url, prefix, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30 * timeout_factor())
        assert line.decode().strip() == "[True, True]"
        registry = ConnectionRegistry(
            redis.asyncio.Redis.from_url(shared_redis.url), ttl=1.0, prefix=prefix
        )
        # The holder keeps refreshing its two (every ttl/3): only one more fits, for a while.
        assert await registry.acquire("alice", "here-0", 3)
        assert not await registry.acquire("alice", "here-1", 3)
        assert await registry.acquire("bob", "here-2", 3)
        await registry.release("alice", "here-0")
        assert await registry.acquire("alice", "here-3", 3)
    finally:
        holder.send_signal(signal.SIGKILL)
        await asyncio.wait_for(holder.wait(), 10 * timeout_factor())
    # The dead holder's entries stop being refreshed and expire within ttl (1 s): poll.
    deadline = asyncio.get_running_loop().time() + 5 * timeout_factor()
    while not await registry.acquire("alice", "here-4", 3):
        assert asyncio.get_running_loop().time() < deadline, "a dead worker's entries stayed"
        await asyncio.sleep(0.1)
    assert await registry.acquire("alice", "here-5", 3)
    assert not await registry.acquire("alice", "here-6", 3)  # 3, 4, 5: at the limit again
    await registry.stop()
    await registry.redis.aclose()


async def test_redis_unreachable_lets_connections_in() -> None:
    client = redis.asyncio.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2
    )
    registry = ConnectionRegistry(client, timeout=0.5)
    assert [await registry.acquire("alice", f"c{i}", 1) for i in range(3)] == [True] * 3
    await registry.release("alice", "c0")  # never raises
    await registry.stop()
    await client.aclose()
