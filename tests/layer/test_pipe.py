"""The auto-pipelining command connection (:mod:`channels_scale.layer.pipe`) on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions

from channels_scale.exceptions import LayerUnavailable
from channels_scale.layer import RedisChannelLayer
from channels_scale.layer.config import HostConfig
from channels_scale.layer.pipe import CommandPipe, encode
from tests.layer.conftest import LayerFactory, scaled


def test_encode_is_resp() -> None:
    assert (
        encode(b"PUBLISH", "ch", b"\x00x") == b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$2\r\n\x00x\r\n"
    )
    assert encode(b"X", 12, 1.5) == b"*3\r\n$1\r\nX\r\n$2\r\n12\r\n$3\r\n1.5\r\n"


async def test_concurrent_calls_share_one_connection_in_order(
    redis_layer_factory: LayerFactory, shared_redis: Any
) -> None:
    """1,000 concurrent queue sends: one pipelined connection, each reply to its caller."""
    layer: RedisChannelLayer = redis_layer_factory(capacity=2000)
    client = redis.asyncio.Redis.from_url(shared_redis.url)
    try:
        await layer.send("jobs", {"n": -1})
        before = await client.info("clients")
        await asyncio.gather(*(layer.send("jobs", {"n": n}) for n in range(1000)))
        after = await client.info("clients")
        assert after["connected_clients"] == before["connected_clients"]
        got = [(await layer.receive("jobs"))["n"] for _ in range(1001)]
        assert got == list(range(-1, 1000))  # written in call order, executed in that order
    finally:
        await client.aclose()


async def test_script_reloaded_after_script_flush(
    redis_layer_factory: LayerFactory, shared_redis: Any
) -> None:
    """EVALSHA answered NOSCRIPT (Redis restarted, SCRIPT FLUSH): the call falls back to EVAL."""
    layer: RedisChannelLayer = redis_layer_factory()
    client = redis.asyncio.Redis.from_url(shared_redis.url)
    try:
        channel = await layer.new_channel()
        await layer.group_add("g", "worker")
        await layer.group_send("g", {"type": "one"})
        await client.script_flush()
        await layer.group_send("g", {"type": "two"})
        assert [(await layer.receive("worker"))["type"] for _ in range(2)] == ["one", "two"]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await layer.receive(channel)
    finally:
        await client.aclose()


async def test_error_reply_is_raised_not_retried(redis_layer_factory: LayerFactory) -> None:
    layer: RedisChannelLayer = redis_layer_factory()
    await layer.send("jobs", {"type": "x"})  # connect
    loop_layer = layer._layer()
    with pytest.raises(redis.exceptions.ResponseError):
        await loop_layer.broker.shards[0].execute("test", encode(b"NOSUCHCOMMAND"))
    assert layer.stats()["send_retries"] == 0
    await layer.send("jobs", {"type": "y"})  # the connection is still in step


async def test_silent_server_trips_the_watchdog() -> None:
    """A server that accepts and never answers: the call raises after ~send_timeout."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []

    async def accept() -> None:
        loop = asyncio.get_running_loop()
        server.setblocking(False)
        while True:
            conn, _ = await loop.sock_accept(server)
            accepted.append(conn)

    acceptor = asyncio.ensure_future(accept())
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}"], send_timeout=1.0)
    try:
        async with asyncio.timeout(scaled(10)):
            with pytest.raises(LayerUnavailable):
                await layer.group_send("g", {"type": "t"})
    finally:
        acceptor.cancel()
        await layer.close()
        for conn in accepted:
            conn.close()
        server.close()


async def test_a_cancelled_connecting_caller_does_not_cancel_the_others() -> None:
    """The first caller opens the connection, the others wait on its attempt: cancelling the
    first (its own deadline, its consumer closing) must not end the others with CancelledError
    (seen in tests/faults: a stream consumer killed while Redis was down)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    in_handshake = asyncio.Event()

    async def accept() -> None:
        loop = asyncio.get_running_loop()
        server.setblocking(False)
        while True:
            conn, _ = await loop.sock_accept(server)
            accepted.append(conn)
            in_handshake.set()

    acceptor = asyncio.ensure_future(accept())
    # A password makes the connection wait for its AUTH reply, which this server never sends.
    layer = RedisChannelLayer(hosts=[f"redis://:pw@127.0.0.1:{port}"], send_timeout=1.0)
    try:
        leader = asyncio.ensure_future(layer.group_send("g", {"type": "t"}))
        await asyncio.wait_for(in_handshake.wait(), scaled(10))  # the leader's handshake
        follower = asyncio.ensure_future(layer.group_send("g", {"type": "t"}))
        await asyncio.sleep(0)  # the follower waits on the leader's attempt
        leader.cancel()
        async with asyncio.timeout(scaled(10)):
            with pytest.raises(LayerUnavailable):
                await follower
        assert leader.cancelled()
    finally:
        acceptor.cancel()
        await layer.close()
        for conn in accepted:
            conn.close()
        server.close()


async def test_close_while_connecting_closes_the_new_connection() -> None:
    """``close()`` (the layer closing) while a call is in the handshake: when the handshake then
    completes, the connection has no owner left and is closed, and the call fails with
    ``ConnectionError``. (It used to be kept: one socket leaked per such close.)"""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.setblocking(False)
    loop = asyncio.get_running_loop()
    pipe = CommandPipe(HostConfig(url=f"redis://:pw@127.0.0.1:{port}/0"), reply_timeout=5)
    conn: socket.socket | None = None
    try:
        call = asyncio.ensure_future(pipe.request(encode(b"PING")))
        async with asyncio.timeout(scaled(10)):
            conn, _ = await loop.sock_accept(server)
            assert (await loop.sock_recv(conn, 1024)).startswith(b"*2\r\n$4\r\nAUTH")
            pipe.close()  # the AUTH is unanswered: the call is in the handshake
            await loop.sock_sendall(conn, b"+OK\r\n")  # now the handshake completes
            # the client closes its end: the server reads EOF (or a reset), not a PING
            with contextlib.suppress(ConnectionResetError):
                assert await loop.sock_recv(conn, 1024) == b""
            with pytest.raises(ConnectionError, match="layer closed"):
                await call
    finally:
        pipe.close()
        if conn is not None:
            conn.close()
        server.close()
