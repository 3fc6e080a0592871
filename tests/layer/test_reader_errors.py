"""The pub/sub reader when Redis refuses its subscriptions (a real ACL user without channels).

Before the fix, the ``SUBSCRIBE`` error reply was dropped as if it were a stray ``PONG``: the
reader sat on a connection that would never deliver, said nothing, and ``receive()`` waited
forever, even after the ACL was corrected.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
import redis.asyncio

from channels_scale.layer import RedisChannelLayer
from tests.layer.conftest import scaled, wait_for_value

FAST = {"backoff_base": 0.02, "backoff_cap": 0.2, "send_timeout": 1.0}


async def test_refused_subscribe_is_logged_counted_and_retried(
    shared_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    admin = redis.asyncio.Redis.from_url(shared_redis.url)
    user, password = f"nochan{uuid.uuid4().hex[:8]}", "pw" + uuid.uuid4().hex
    prefix = f"t{uuid.uuid4().hex[:10]}"
    # every key and command, but no pub/sub channel: SUBSCRIBE is answered with -NOPERM
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all",
                                "resetchannels")  # fmt: skip
    url = f"redis://{user}:{password}@127.0.0.1:{shared_redis.port}/0"
    receiver = RedisChannelLayer(hosts=[url], prefix=prefix, **FAST)
    sender = RedisChannelLayer(hosts=[shared_redis.url], prefix=prefix, **FAST)
    try:
        with caplog.at_level(logging.WARNING, logger="channels_scale.layer"):
            channel = await receiver.new_channel()  # returns after send_timeout, not confirmed
            await receiver.group_add("room", channel)
            waiting = asyncio.ensure_future(receiver.receive(channel))
            await wait_for_value(lambda: receiver.stats()["pubsub_errors"] >= 3)
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == 1, [r.getMessage() for r in caplog.records]  # logged once
        assert "NOPERM" in refused[0].getMessage()
        assert not waiting.done()

        # the operator fixes the ACL: the reader's next attempt subscribes, messages flow
        await admin.execute_command("ACL", "SETUSER", user, "allchannels")
        async with asyncio.timeout(scaled(10)):
            while not waiting.done():
                await sender.group_send("room", {"type": "hello"})
                await asyncio.wait({waiting}, timeout=0.1)
        assert waiting.result() == {"type": "hello"}
    finally:
        await sender.flush()  # the receiver may not publish (its flush notice)
        await receiver.close()
        await sender.close()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
