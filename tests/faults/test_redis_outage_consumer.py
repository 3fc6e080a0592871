"""Regression: a Redis outage longer than ``send_timeout`` must not kill the broadcast consumer.

Found by the issue-13 probe against ``up --workers 2``: with Redis down longer than the layer's
``send_timeout``, the consumer that sent died with an uncaught ``LayerUnavailable`` (the server
closed it with 1011 and logged a traceback). Now the sender gets the ``not_delivered`` error frame
and the connection stays open; once Redis is back the same connection broadcasts again.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import redis
from channels.testing import WebsocketCommunicator

from broadcast.consumers import NOT_DELIVERED
from channels_scale.layer import RedisChannelLayer
from channels_scale.net import timeout_factor, wait_until
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


async def listener_gets(layer: RedisChannelLayer, channel: str, text: str) -> bool:
    """Whether ``text`` reaches ``channel`` within half a second (receive is cancel-safe)."""
    try:
        async with asyncio.timeout(wait(0.5)):
            while (await layer.receive(channel))["text"] != text:
                pass
    except TimeoutError:
        return False
    return True


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
        # Redis (bounded number of tries: the layer reconnects with backoff; a try that fails gets
        # NOT_DELIVERED, sent before the frame's local copy; one published before the listener
        # resubscribed is lost, as pub/sub is at most once).
        seen = {"during", NOT_DELIVERED}
        for attempt in range(40):
            text = f"after {attempt}"
            await sender.send_to(text_data=text)
            failed = NOT_DELIVERED in await read_until(sender, text, seen, 5 + 4 * SEND_TIMEOUT)
            seen.add(text)
            if not failed and await listener_gets(listener, channel, text):
                break
        else:
            raise AssertionError("broadcasts did not flow again within 40 tries")
        await read_until(other, text, seen)
        assert not sender.future.done() and not other.future.done()
    finally:
        for client in (sender, other):
            await client.disconnect(timeout=wait(5))
        await listener.close()


def answers_loading(port: int) -> bool:
    """Whether Redis on ``port`` answers PING with ``-LOADING`` (it is reading its data back)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"-LOADING")
    except OSError:
        return False


async def test_group_send_retries_while_restarted_redis_loads_its_data(tmp_path: Path) -> None:
    """Found by the fault suite: a Redis restarted with its append-only file answers ``LOADING``
    for a while; the layer's pipelined path raised that as ``ResponseError`` (not retried, not
    ``LayerUnavailable``), which no consumer catches. Now it is retried within send_timeout."""
    redis_server = RedisProcess(
        tmp_path, extra_args=("--appendonly", "yes", "--enable-debug-command", "yes")
    )
    redis_server.start()
    layer = RedisChannelLayer(hosts=[redis_server.url], send_timeout=30, **FAST)
    try:
        await layer.group_send("loading", {"type": "warm.up"})
        # enough data in the append-only file that loading it takes a visible while
        client = redis.Redis.from_url(redis_server.url)
        client.execute_command("DEBUG", "POPULATE", "1000000")
        client.bgrewriteaof()
        assert wait_until(
            lambda: (
                not any(
                    client.info("persistence")[k]
                    for k in ("aof_rewrite_in_progress", "aof_rewrite_scheduled")
                )
            ),
            30,
        )
        client.close()
        redis_server.stop()

        starting = asyncio.ensure_future(asyncio.to_thread(redis_server.start))

        async def watch_loading() -> bool:
            while not starting.done():
                if await asyncio.to_thread(answers_loading, redis_server.port):
                    return True
                await asyncio.sleep(0.01)
            return False

        async def send_until_started() -> int:
            sends = 0
            while not starting.done() or sends == 0:
                await layer.group_send("loading", {"type": "during.restart"})  # must not raise
                sends += 1
            return sends

        async with asyncio.timeout(wait(60)):
            loading_seen, sends = await asyncio.gather(watch_loading(), send_until_started())
            await starting
        assert sends >= 1
        assert loading_seen, "Redis never answered LOADING: the test did not test the restart"
    finally:
        await layer.close()
        redis_server.stop(kill=True)
