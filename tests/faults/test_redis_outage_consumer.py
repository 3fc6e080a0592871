"""Regression: a Redis outage longer than ``send_timeout`` must not kill the broadcast consumer.

Found by the issue-13 probe against ``up --workers 2``: with Redis down longer than the layer's
``send_timeout``, the consumer that sent died with an uncaught ``LayerUnavailable`` (the server
closed it with 1011 and logged a traceback). Now the sender gets the ``not_delivered`` error frame
and the connection stays open; once Redis is back the same connection broadcasts again.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from channels.testing import WebsocketCommunicator

from broadcast.consumers import NOT_DELIVERED
from channels_scale.layer import RedisChannelLayer
from channels_scale.net import timeout_factor
from tests.conftest import RedisProcess

SEND_TIMEOUT = 0.5  # small, so the outage below is "longer than send_timeout" in a short test
FAST = {"backoff_base": 0.02, "backoff_cap": 0.3, "health_check_interval": 1.0}


def wait(seconds: float) -> float:
    return seconds * timeout_factor()


async def next_text(client: WebsocketCommunicator, seconds: float = 5) -> str:
    """The next text frame (fails if the consumer died: the communicator raises its error)."""
    frame: dict[str, Any] = await client.receive_output(timeout=wait(seconds))
    assert frame["type"] == "websocket.send", f"not a frame: {frame}"
    return str(frame["text"])


async def read_until(
    client: WebsocketCommunicator, wanted: str, allowed: set[str], seconds: float = 5
) -> list[str]:
    """Read frames until ``wanted`` and return those before it, each of which must be in
    ``allowed`` (at most 50 frames)."""
    before: list[str] = []
    for _ in range(50):
        text = await next_text(client, seconds)
        if text == wanted:
            return before
        assert text in allowed, f"unexpected frame {text!r} while waiting for {wanted!r}"
        before.append(text)
    raise AssertionError(f"{wanted!r} not received within 50 frames")


async def test_broadcast_sender_survives_redis_down_past_send_timeout(
    settings: Any, redis_server: RedisProcess
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_scale.layer.RedisChannelLayer",
            "CONFIG": {
                "hosts": [redis_server.url],
                "prefix": "t" + uuid.uuid4().hex[:12],
                "send_timeout": SEND_TIMEOUT,
                **FAST,
            },
        }
    }
    from config.asgi import application

    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    listener = RedisChannelLayer(**config)  # another process' view of the room, through Redis
    channel = await listener.new_channel()
    await listener.group_add("broadcast.outage", channel)
    path = "/ws/broadcast/outage/"
    sender = WebsocketCommunicator(application, path, headers=[(b"host", b"testserver")])
    other = WebsocketCommunicator(application, path, headers=[(b"host", b"testserver")])
    try:
        for client in (sender, other):
            connected, _ = await client.connect(timeout=wait(5))
            assert connected
        await sender.send_to(text_data="before")
        assert await next_text(sender) == "before"
        assert await next_text(other) == "before"

        redis_server.stop(kill=True)
        await sender.send_to(text_data="during")
        # After send_timeout, the documented error frame instead of a dead consumer. ("during"
        # itself may still reach members in this process: local fan-out happens before Redis
        # is asked.)
        await read_until(sender, NOT_DELIVERED, {"during"}, 5 + 4 * SEND_TIMEOUT)
        assert json.loads(NOT_DELIVERED)["code"] == "not_delivered"
        assert not sender.future.done(), "the consumer ended during the outage"

        redis_server.start()
        # Same connection, after the outage: its broadcasts reach another process again through
        # Redis (bounded number of tries, as the layer reconnects with backoff; a try that fails
        # gets NOT_DELIVERED, sent before the frame's local copy).
        seen = {"during", NOT_DELIVERED}
        for attempt in range(40):
            text = f"after {attempt}"
            await sender.send_to(text_data=text)
            if NOT_DELIVERED not in await read_until(sender, text, seen, 5 + 4 * SEND_TIMEOUT):
                break
            seen.add(text)
        else:
            raise AssertionError("broadcasts did not flow again within 40 tries")
        async with asyncio.timeout(wait(5)):
            while (await listener.receive(channel))["text"] != text:
                pass
        await read_until(other, text, seen)
        assert not sender.future.done() and not other.future.done()
    finally:
        for client in (sender, other):
            await client.disconnect(timeout=wait(5))
        await listener.close()
