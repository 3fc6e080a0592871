"""The publishing side of the layer on a real redis-server: requests of one event-loop turn
share one write, and a process drops its own group messages coming back from Redis unread."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from channels_scale.layer.config import HostConfig
from channels_scale.layer.pipe import CommandPipe, encode
from tests.layer.conftest import LayerFactory, scaled, wait_for_value


def reads_processed(port: int) -> int:
    """Redis' ``total_reads_processed`` (read events on every client socket), asked over a
    connection of its own (that ``INFO`` is one more read event)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(encode(b"INFO", b"stats"))
        data = b""
        while b"total_reads_processed:" not in data or not data.endswith(b"\r\n\r\n"):
            data += sock.recv(65536)
    line = data.split(b"total_reads_processed:")[1].split(b"\r\n")[0]
    return int(line)


async def test_requests_of_one_turn_leave_in_one_write(redis_server: Any) -> None:
    pipe = CommandPipe(HostConfig(url=redis_server.url), reply_timeout=scaled(5))
    try:
        assert await pipe.request(encode(b"DEL", b"counter")) == 0  # connected
        before = reads_processed(redis_server.port)
        async with asyncio.timeout(scaled(5)):
            replies = await asyncio.gather(
                *(pipe.request(encode(b"INCR", b"counter")) for _ in range(200))
            )
        after = reads_processed(redis_server.port)
        assert replies == list(range(1, 201))  # executed in the order requested
        # 200 commands written one by one reach Redis in many reads; as one write, in one or
        # two (a large write may be split), plus the second INFO connection's own read
        assert after - before <= 3, after - before
    finally:
        pipe.close()


async def test_own_group_messages_are_dropped_unread(redis_layer_factory: LayerFactory) -> None:
    here = redis_layer_factory(history={"logged.*": {"size": 10, "ttl": 60}})
    there = redis_layer_factory(prefix=here.config.prefix)
    for group in ("live", "logged.room"):
        mine, theirs = await here.new_channel(), await there.new_channel()
        await here.group_add(group, mine)
        await there.group_add(group, theirs)
        received = here.stats()["received"]
        await here.group_send(group, {"type": "m", "n": 1})
        async with asyncio.timeout(scaled(5)):
            got_here = await here.receive(mine)
            got_there = await there.receive(theirs)
        assert got_here["n"] == got_there["n"] == 1
        # the echo arrived and was counted, not delivered a second time, not a bad frame
        await wait_for_value(lambda: here.stats()["received"] == received + 1)  # noqa: B023
        assert here.stats()["bad_frames"] == 0
        with_echo = asyncio.ensure_future(here.receive(mine))
        await there.group_send(group, {"type": "m", "n": 2})
        async with asyncio.timeout(scaled(5)):
            assert (await with_echo)["n"] == 2  # the next one, not the first one again
