"""Group messages between real OS processes through the cluster (tests/layer/member_process.py,
the member process of the single-Redis test, given the cluster URL)."""

from __future__ import annotations

import asyncio
import sys
import uuid

from channels_scale.layer import RedisChannelLayer
from tests.cluster.conftest import RedisCluster
from tests.layer.conftest import scaled
from tests.layer.test_processes import ROOT, read_line


async def test_group_messages_between_processes_on_a_cluster(redis_cluster: RedisCluster) -> None:
    prefix = f"mp{uuid.uuid4().hex[:8]}"
    group, members, messages = "room", 3, 40
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.layer.member_process",
            redis_cluster.url, prefix, group, str(members), str(messages),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]  # fmt: skip
    layer = RedisChannelLayer(hosts=[redis_cluster.url], prefix=prefix)
    try:
        channels = [(await read_line(proc))[1:] for proc in procs]
        await layer.send(channels[1][0], {"type": "direct", "n": 2})  # an inbox on its slot
        for i in range(messages):
            await layer.group_send(group, {"type": "chat", "n": i})
        lines = [
            [await read_line(p) for _ in range(2 if k == 0 else 3)] for k, p in enumerate(procs)
        ]
        assert lines[1][0] == ["got", channels[1][0], "2"]
        for k in range(2):
            assert lines[k][-2] == ["done", str(members * messages)]
            assert lines[k][-1] == ["stats", "0"]
        assert layer.stats()["published"] == messages + 1  # one SPUBLISH per group_send
        for proc in procs:
            async with asyncio.timeout(scaled(10)):
                assert await proc.wait() == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await layer.flush()
        await layer.close()
