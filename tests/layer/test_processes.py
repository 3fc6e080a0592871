"""Group messages between several real OS processes, through a real redis-server."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import redis.asyncio

from channels_scale.layer import RedisChannelLayer
from channels_scale.layer.naming import Keys
from tests.layer.conftest import scaled

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def read_line(proc: asyncio.subprocess.Process, within: float = 20) -> list[str]:
    assert proc.stdout is not None
    async with asyncio.timeout(scaled(within)):
        line = await proc.stdout.readline()
    assert line, "member process exited early"
    return line.decode().split()


async def test_group_messages_between_processes(shared_redis: Any) -> None:
    prefix = f"mp{uuid.uuid4().hex[:8]}"
    group, members, messages = "room", 5, 40
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.layer.member_process",
            shared_redis.url, prefix, group, str(members), str(messages),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]  # fmt: skip
    layer = RedisChannelLayer(hosts=[shared_redis.url], prefix=prefix)
    client = redis.asyncio.Redis.from_url(shared_redis.url)
    try:
        channels = []
        for proc in procs:
            words = await read_line(proc)
            assert words[0] == "ready"
            channels.append(words[1:])
        local = await layer.new_channel()
        await layer.group_add(group, local)

        # a channel of another process joins a group from here: routed to its owner
        await layer.group_add("extra", channels[0][0])
        extra = Keys(prefix).group("extra")
        async with asyncio.timeout(scaled(10)):
            while (await client.pubsub_numsub(extra))[0][1] != 1:  # noqa: ASYNC110 -- other process
                await asyncio.sleep(0.02)
        await layer.group_send("extra", {"type": "direct", "n": 1})
        await layer.send(channels[1][0], {"type": "direct", "n": 2})

        for i in range(messages):
            await layer.group_send(group, {"type": "chat", "n": i})
        for i in range(messages):
            async with asyncio.timeout(scaled(5)):
                assert (await layer.receive(local))["n"] == i

        lines = [
            [await read_line(p) for _ in range(3 if k < 2 else 2)] for k, p in enumerate(procs)
        ]
        assert lines[0][0] == ["got", channels[0][0], "1"]
        assert lines[1][0] == ["got", channels[1][0], "2"]
        for k in range(3):
            done = lines[k][-2]
            assert done == ["done", str(members * messages)]
            assert lines[k][-1] == ["stats", "0"]
        # one PUBLISH per group_send whatever the number of processes and members
        # (+3: the group_add control message, the "extra" group_send, the direct send)
        assert layer.stats()["published"] == messages + 3
        for proc in procs:
            async with asyncio.timeout(scaled(10)):
                assert await proc.wait() == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await client.aclose()
        await layer.flush()
        await layer.close()
