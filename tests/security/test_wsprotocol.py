"""BoundedWebSocketProtocol in a real uvicorn server, driven by hand-made frames."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from channels_scale import wsprotocol
from channels_scale.asgi import refusals
from channels_scale.net import free_port, timeout_factor
from channels_scale.wsprotocol import BoundedWebSocketProtocol
from tests.security.rawws import BINARY, CONT, PING, TEXT, RawSocket, frame

WAIT = 5 * timeout_factor()


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Accept, then send every message back (its text or bytes length)."""
    assert scope["type"] == "websocket"
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            text = message.get("text")
            reply = text if text is not None else f"bytes {len(message['bytes'])}"
            await send({"type": "websocket.send", "text": reply})
        else:
            return


@pytest.fixture
async def server() -> AsyncIterator[uvicorn.Server]:
    chosen = free_port()
    config = uvicorn.Config(
        echo, host="127.0.0.1", port=chosen, ws=BoundedWebSocketProtocol,
        lifespan="off", log_level="warning", ws_max_size=65536,
    )  # fmt: skip
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    async with asyncio.timeout(WAIT):
        while not running.started:  # noqa: ASYNC110 -- uvicorn sets a flag, no event
            await asyncio.sleep(0.01)
    yield running
    running.should_exit = True
    await asyncio.wait_for(task, WAIT)


@pytest.fixture
def port(server: uvicorn.Server) -> int:
    return int(server.config.port)


async def _open(port: int) -> RawSocket:
    sock = await RawSocket.open(port, "/")
    assert sock.answer.status == 101
    return sock


async def test_empty_continuation_flood_closes_with_1009(port: int) -> None:
    before = refusals[wsprotocol.TOO_MANY_FRAGMENTS]
    sock = await _open(port)
    # Everything in one write: the server gets it in a few reads of many frames each.
    flood = frame(TEXT, b"x", fin=False) + frame(CONT, fin=False) * 50_000
    await sock.send(flood)
    answer = await sock.read_until_closed(WAIT)
    assert answer.close_code == 1009
    assert answer.texts == []
    assert refusals[wsprotocol.TOO_MANY_FRAGMENTS] == before + 1
    await sock.close()


async def test_a_message_within_the_fragment_bound_is_delivered_whole(port: int) -> None:
    sock = await _open(port)
    # First frame + middle fragments + last frame = exactly max_fragments frames.
    pieces = [b"ab"] * (BoundedWebSocketProtocol.max_fragments - 2)
    middle = b"".join(frame(CONT, p, fin=False) for p in pieces)
    await sock.send(frame(TEXT, b"s", fin=False) + middle + frame(CONT, b"e"))
    # A second message as long: the count starts again with every message.
    await sock.send(frame(BINARY, b"s", fin=False) + middle + frame(CONT, b"e"))
    answer = await sock.read_until_closed(WAIT, texts=2)
    whole = b"s" + b"ab" * len(pieces) + b"e"
    assert answer.texts == [whole, f"bytes {len(whole)}".encode()]
    assert answer.close_code is None
    await sock.close()


async def test_one_more_fragment_than_the_bound_closes(port: int) -> None:
    sock = await _open(port)
    count = BoundedWebSocketProtocol.max_fragments
    await sock.send(frame(TEXT, b"s", fin=False) + frame(CONT, b"x", fin=False) * count)
    answer = await sock.read_until_closed(WAIT)
    assert answer.close_code == 1009
    assert answer.texts == []
    await sock.close()


async def test_invalid_utf8_closes_with_1007_counted_and_not_logged(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn logged a traceback for each such message (found by the hostile-input run)."""
    before = refusals[wsprotocol.INVALID_UTF8]
    for payload in (frame(TEXT, b"ok \xed\xa0\x80"), frame(TEXT, b"\xc3", fin=False) + frame(CONT)):
        sock = await _open(port)
        await sock.send(frame(TEXT, "é".encode()))
        assert (await sock.read_until_closed(WAIT, texts=1)).texts == ["é".encode()]
        await sock.send(payload)
        answer = await sock.read_until_closed(WAIT)
        assert (answer.texts, answer.close_code) == (["é".encode()], 1007)
        await sock.close()
    assert refusals[wsprotocol.INVALID_UTF8] == before + 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_ping_flood_closes_with_1008_and_a_few_pings_are_answered(port: int) -> None:
    calm = await _open(port)
    for _ in range(5):
        await calm.send(frame(PING, b"p"))
    await calm.send(frame(TEXT, b"still here"))
    reply = await calm.read_until_closed(WAIT, texts=1)
    assert reply.close_code is None and reply.texts == [b"still here"]

    before = refusals[wsprotocol.TOO_MANY_CONTROL_FRAMES]
    flooder = await _open(port)
    await flooder.send(frame(PING, b"p") * 10_000)
    answer = await flooder.read_until_closed(WAIT)
    assert answer.close_code == 1008
    assert refusals[wsprotocol.TOO_MANY_CONTROL_FRAMES] == before + 1
    await calm.send(frame(TEXT, b"unharmed"))
    assert (await calm.read_until_closed(WAIT, texts=2)).texts[-1] == b"unharmed"
    await calm.close()
    await flooder.close()


def test_a_finished_loop_is_not_kept_alive_by_its_write_coalescer() -> None:
    # Each loop that ever wrote pre-framed frames gets a coalescer; it must not keep the loop
    # (and what the loop references) alive once the loop is gone -- tests run hundreds of loops.
    loop = asyncio.new_event_loop()
    gone = weakref.ref(loop)
    coalescer = wsprotocol._coalescer(loop)
    assert wsprotocol._coalescer(loop) is coalescer
    loop.close()
    del loop
    gc.collect()
    assert gone() is None
    assert coalescer.loop() is None


async def test_an_open_connection_keeps_no_parsed_request_or_response(
    server: uvicorn.Server,
) -> None:
    """uvicorn keeps both for the connection's life (~5.5 KiB of ~24 per idle connection)."""
    port = int(server.config.port)
    sock = await RawSocket.open(port, "/", headers=[("X-Note", "kept in the scope")])
    assert sock.answer.status == 101
    await sock.send(frame(TEXT, b"hello"))
    assert (await sock.read_until_closed(WAIT, texts=1)).texts == [b"hello"]
    (protocol,) = server.server_state.connections
    assert isinstance(protocol, BoundedWebSocketProtocol)
    assert len(protocol.request.headers) == 0
    assert not hasattr(protocol, "response")
    # The application's copy is whole.
    assert (b"x-note", b"kept in the scope") in protocol.scope["headers"]
    await sock.close()


async def test_a_handshake_websockets_refuses_gets_400_and_nothing_is_logged(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn makes no scope for it: what our class does after the handshake must not run."""
    sock = await RawSocket.open(port, "/", headers=[("Sec-WebSocket-Version", "8")])
    assert sock.answer.status == 400
    await sock.close()
    calm = await _open(port)  # the server goes on
    await calm.send(frame(TEXT, b"fine"))
    assert (await calm.read_until_closed(WAIT, texts=1)).texts == [b"fine"]
    await calm.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
