"""The layer's own connections: handshake options, unix sockets, write flow control."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from channels_scale.exceptions import LayerUnavailable
from channels_scale.layer import RedisChannelLayer
from channels_scale.layer.config import HostConfig
from channels_scale.layer.pipe import CommandPipe, encode
from channels_scale.layer.wire import connection_options, handshake_commands
from tests.layer.conftest import scaled
from tests.layer.test_contract import recv


def test_options_from_url_and_dict() -> None:
    options = connection_options(
        HostConfig("rediss://ann:s%40cret@example.org:7000/3?client_name=w1&ssl_cert_reqs=none")
    )
    assert options["host"] == "example.org" and options["port"] == 7000 and options["db"] == 3
    assert options["username"] == "ann" and options["password"] == "s@cret"
    assert options["ssl"] is True and options["ssl_cert_reqs"] == "none"
    assert handshake_commands(options) == [
        encode(b"AUTH", "ann", "s@cret"),
        encode(b"SELECT", 3),
        encode(b"CLIENT", b"SETNAME", "w1"),
    ]
    unix = connection_options(HostConfig("unix:///tmp/r.sock?db=2", {"password": "p"}))
    assert unix["path"] == "/tmp/r.sock" and int(unix["db"]) == 2
    assert handshake_commands(unix)[0] == encode(b"AUTH", "p")
    assert handshake_commands(connection_options(HostConfig("redis://localhost"))) == []


async def test_acl_user_password_db_and_name(redis_server: Any) -> None:
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    await admin.execute_command("ACL", "SETUSER", "worker", "on", ">pw", "~*", "&*", "+@all")
    url = f"redis://worker:pw@127.0.0.1:{redis_server.port}/5?client_name=layer-test"
    layer = RedisChannelLayer(hosts=[url])
    other = RedisChannelLayer(hosts=[url])
    try:
        channel = await layer.new_channel()
        await layer.group_add("acl-room", channel)
        await other.group_send("acl-room", {"type": "over acl"})
        assert await recv(layer, channel) == {"type": "over acl"}
        clients = await admin.client_list()
        assert any(c["name"] == "layer-test" and c["db"] == "5" for c in clients)
        assert any(c["user"] == "worker" for c in clients)
    finally:
        await layer.close()
        await other.close()
    wrong = RedisChannelLayer(hosts=[url.replace(":pw@", ":nope@")], send_timeout=0.5)
    try:
        with pytest.raises(LayerUnavailable, match=r"WRONGPASS|invalid"):
            await wrong.group_send("acl-room", {"type": "refused"})
    finally:
        await wrong.close()
        await admin.aclose()


async def test_unix_socket(shared_redis: Any, tmp_path: Path) -> None:
    """A unix socket in front of the real Redis (a byte forwarder: redis-server's own unix
    socket cannot be enabled at run time on the shared server)."""

    writers: list[asyncio.StreamWriter] = []

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", shared_redis.port)
        writers.extend((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    path = tmp_path / "redis.sock"
    server = await asyncio.start_unix_server(forward, str(path))
    layer = RedisChannelLayer(hosts=[f"unix://{path}"])
    try:
        channel = await layer.new_channel()
        await layer.group_add("unix-room", channel)
        await layer.send(channel, {"type": "direct"})
        assert await recv(layer, channel) == {"type": "direct"}
        # the pipelined path and the pub/sub path both went through the socket
        await layer.send(f"x.{'Z' * 12}!abc", {"type": "to nobody"})  # PUBLISH on the pipe
        assert layer.stats()["undeliverable"] == 1
    finally:
        await layer.close()
        server.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


async def test_requests_wait_while_the_transport_is_paused(shared_redis: Any) -> None:
    pipe = CommandPipe(HostConfig(shared_redis.url), reply_timeout=scaled(5))
    try:
        assert await pipe.request(encode(b"PING")) == b"PONG"
        pipe.writable.clear()  # what the protocol's pause_writing() does
        waiting = asyncio.ensure_future(pipe.request(encode(b"PING")))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        pipe.writable.set()  # resume_writing()
        async with asyncio.timeout(scaled(5)):
            assert await waiting == b"PONG"
    finally:
        pipe.close()
