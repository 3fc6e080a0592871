"""One behaviour suite, run against Channels' consumers and ours, through Channels' communicator.

Where the two families differ on purpose (a frame over the size limit, malformed JSON), the test
states both behaviours.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from channels_scale.closecodes import CloseCode
from tests.consumers.conftest import wait
from tests.consumers.families import FAMILIES, Journal

# Both families run Django's close_old_connections in asgiref's DB thread. Under pytest-django
# that thread may still hold a connection from an earlier test (an in-memory SQLite connection
# cannot be closed), and outside a django_db test pytest-django blocks the DB access the check
# needs. These tests write nothing; the mark only allows that access.
pytestmark = pytest.mark.django_db


@pytest.fixture(params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> Iterator[str]:
    echo, json_consumer = FAMILIES[request.param]
    echo.journal = json_consumer.journal = Journal()
    yield request.param


@pytest.fixture
def journal(family: str) -> Journal:
    journal: Journal = FAMILIES[family][0].journal
    return journal


Client = Callable[..., Any]


@pytest.fixture
def client(family: str) -> Client:
    """``client(path="/", json=False)``: a connected communicator, disconnected on exit."""

    @asynccontextmanager
    async def open_client(query: str = "", json: bool = False) -> AsyncIterator[Any]:
        consumer = FAMILIES[family][1 if json else 0]
        path = "/ws/?" + query if query else "/ws/"
        communicator = WebsocketCommunicator(consumer.as_asgi(), path)
        try:
            yield communicator
        finally:
            if not communicator.future.done():  # else the test saw the consumer end
                await communicator.disconnect(timeout=wait())

    return open_client


async def connected(communicator: Any) -> Any:
    ok, subprotocol = await communicator.connect(timeout=wait())
    assert ok
    return subprotocol


async def ended_with(communicator: Any) -> BaseException | None:
    """Wait for the consumer to end; return the exception it ended with."""
    await asyncio.wait([communicator.future], timeout=wait())
    assert communicator.future.done()
    exception: BaseException | None = communicator.future.exception()
    return exception


async def close_code(communicator: Any) -> int | None:
    output = await communicator.receive_output(timeout=wait())
    assert output["type"] == "websocket.close", output
    code: int | None = output.get("code")
    return code


# -- connect / accept / reject ----------------------------------------------------------------


async def test_connect_accepts(client: Client) -> None:
    async with client() as ws:
        assert await connected(ws) is None


async def test_accept_with_subprotocol(client: Client) -> None:
    async with client("proto") as ws:
        assert await connected(ws) == "v1"


async def test_deny_connection_rejects(client: Client) -> None:
    async with client("deny") as ws:
        ok, code = await ws.connect(timeout=wait())
        assert not ok
        assert code == 1000  # Channels' communicator reports a rejected handshake as 1000


async def test_close_without_accept_rejects(client: Client) -> None:
    async with client("ignore") as ws:
        ok, _ = await ws.connect(timeout=wait())
        assert not ok


# -- frames -------------------------------------------------------------------------------------


async def test_receive_text(client: Client) -> None:
    async with client() as ws:
        await connected(ws)
        await ws.send_to(text_data="hello")
        assert await ws.receive_from(timeout=wait()) == "echo:hello"


async def test_receive_bytes(client: Client) -> None:
    async with client() as ws:
        await connected(ws)
        await ws.send_to(bytes_data=b"\x00\x01")
        assert await ws.receive_from(timeout=wait()) == b"echo:\x00\x01"


async def test_json_round_trip(client: Client) -> None:
    async with client(json=True) as ws:
        await connected(ws)
        await ws.send_json_to({"a": [1, "é"]})
        assert await ws.receive_json_from(timeout=wait()) == {"echo": {"a": [1, "é"]}}


async def test_send_json_with_close(client: Client) -> None:
    async with client(json=True) as ws:
        await connected(ws)
        await ws.send_json_to("close")
        assert await ws.receive_json_from(timeout=wait()) == {"bye": True}
        assert await close_code(ws) is None  # close=True: no code, as Channels sends it


# -- close codes --------------------------------------------------------------------------------


async def test_send_with_close(client: Client) -> None:
    async with client() as ws:
        await connected(ws)
        await ws.send_to(text_data="bye")
        assert await ws.receive_from(timeout=wait()) == "bye"
        assert await close_code(ws) is None


async def test_close_with_code_and_reason(client: Client) -> None:
    async with client() as ws:
        await connected(ws)
        await ws.send_to(text_data="close 4003")
        output = await ws.receive_output(timeout=wait())
        assert output == {"type": "websocket.close", "code": 4003, "reason": "asked"}


async def test_frame_over_limit(client: Client, family: str, settings: Any) -> None:
    settings.WEBSOCKET_MAX_MESSAGE_BYTES = 8
    async with client() as ws:
        await connected(ws)
        await ws.send_to(text_data="éééé")  # 4 characters, 8 bytes: at the limit
        assert await ws.receive_from(timeout=wait()) == "echo:éééé"
        await ws.send_to(text_data="ééééé")  # 10 bytes
        if family == "ours":
            assert await close_code(ws) == CloseCode.MESSAGE_TOO_BIG
        else:  # Channels has no limit of its own
            assert await ws.receive_from(timeout=wait()) == "echo:ééééé"


async def test_binary_frame_over_limit(client: Client, family: str, settings: Any) -> None:
    settings.WEBSOCKET_MAX_MESSAGE_BYTES = 4
    async with client() as ws:
        await connected(ws)
        await ws.send_to(bytes_data=b"12345")
        if family == "ours":
            assert await close_code(ws) == CloseCode.MESSAGE_TOO_BIG
        else:
            assert await ws.receive_from(timeout=wait()) == b"echo:12345"


@pytest.mark.parametrize(
    "frame", [{"text_data": "{not json"}, {"bytes_data": b"{}"}], ids=["bad-json", "binary"]
)
async def test_malformed_json(client: Client, family: str, frame: dict[str, Any]) -> None:
    async with client(json=True) as ws:
        await connected(ws)
        await ws.send_to(**frame)
        if family == "ours":
            assert await close_code(ws) == CloseCode.POLICY_VIOLATION
        else:  # Channels raises, which ends the consumer (a server then closes with 1011)
            assert isinstance(await ended_with(ws), ValueError)


# -- groups and handlers ------------------------------------------------------------------------


async def test_group_join_send_leave(client: Client) -> None:
    async with client() as alice, client() as bob:
        await connected(alice)
        await connected(bob)
        for ws in (alice, bob):
            await ws.send_to(text_data="join room")
            assert await ws.receive_from(timeout=wait()) == "joined room"
        await alice.send_to(text_data="shout room hi all")
        assert await alice.receive_from(timeout=wait()) == "room:hi all"
        assert await bob.receive_from(timeout=wait()) == "room:hi all"
        await bob.send_to(text_data="leave room")
        assert await bob.receive_from(timeout=wait()) == "left room"
        await alice.send_to(text_data="shout room again")
        assert await alice.receive_from(timeout=wait()) == "room:again"
        assert await bob.receive_nothing(timeout=wait(0.2))


async def test_class_groups_joined_and_left(family: str) -> None:
    echo = FAMILIES[family][0]
    grouped = type("Grouped", (echo,), {"groups": ["everyone"]})
    layer = get_channel_layer()
    ws = WebsocketCommunicator(grouped.as_asgi(), "/ws/")
    await connected(ws)
    await layer.group_send("everyone", {"type": "room.message", "text": "x"})
    assert await ws.receive_from(timeout=wait()) == "room:x"
    await ws.disconnect(timeout=wait())
    assert "everyone" not in layer.groups


async def test_handler_by_type_in_order(client: Client) -> None:
    layer = get_channel_layer()
    async with client() as ws:
        await connected(ws)
        await ws.send_to(text_data="whoami")
        channel = await ws.receive_from(timeout=wait())
        for i in range(20):
            await layer.send(channel, {"type": "room.message", "text": str(i)})
        assert [await ws.receive_from(timeout=wait()) for _ in range(20)] == [
            f"room:{i}" for i in range(20)
        ]


async def test_unknown_type_raises(client: Client, family: str, journal: Journal) -> None:
    layer = get_channel_layer()
    async with client() as ws:
        await connected(ws)
        await ws.send_to(text_data="whoami")
        channel = await ws.receive_from(timeout=wait())
        await layer.send(channel, {"type": "no.such.handler"})
        if family == "ours":  # closed with 1011 and released (disconnect ran); nothing raised
            assert await close_code(ws) == CloseCode.INTERNAL_ERROR
            assert await ended_with(ws) is None
            assert journal.events[-1] == ("disconnect", CloseCode.INTERNAL_ERROR)
        else:
            error = await ended_with(ws)
            assert isinstance(error, ValueError)
            assert str(error) == "No handler for message type no.such.handler"


async def test_handler_error_from_layer_ends_consumer(
    client: Client, family: str, journal: Journal
) -> None:
    layer = get_channel_layer()
    async with client() as ws:
        await connected(ws)
        await ws.send_to(text_data="whoami")
        channel = await ws.receive_from(timeout=wait())
        await layer.send(channel, {"type": "fail.now"})
        if family == "ours":
            assert await close_code(ws) == CloseCode.INTERNAL_ERROR
            assert await ended_with(ws) is None
            assert journal.events[-1] == ("disconnect", CloseCode.INTERNAL_ERROR)
        else:
            error = await ended_with(ws)
            assert isinstance(error, RuntimeError)
            assert str(error) == "handler failed"


async def test_stop_consumer_from_layer_ends_cleanly(client: Client) -> None:
    layer = get_channel_layer()
    async with client() as ws:
        await connected(ws)
        await ws.send_to(text_data="whoami")
        channel = await ws.receive_from(timeout=wait())
        await layer.send(channel, {"type": "stop.now"})
        assert await ended_with(ws) is None


async def test_handlers_never_overlap(client: Client, journal: Journal) -> None:
    layer = get_channel_layer()
    async with client() as ws:
        await connected(ws)
        await ws.send_to(text_data="whoami")
        channel = await ws.receive_from(timeout=wait())
        await ws.send_to(text_data="slow 0.2")
        await asyncio.sleep(0.05)  # the slow websocket handler is running now
        await layer.send(channel, {"type": "room.message", "text": "during"})
        assert await ws.receive_from(timeout=wait()) == "slow done"
        assert await ws.receive_from(timeout=wait()) == "room:during"
        assert journal.events == ["slow start", "slow end", ("room", "during")]


# -- disconnect ----------------------------------------------------------------------------------


async def test_disconnect_calls_disconnect_and_stops(family: str, journal: Journal) -> None:
    ws = WebsocketCommunicator(FAMILIES[family][0].as_asgi(), "/ws/")
    await connected(ws)
    await ws.send_input({"type": "websocket.disconnect", "code": 4321})
    assert await ended_with(ws) is None
    assert journal.events == [("disconnect", 4321)]


async def test_stop_loses_no_layer_message(family: str) -> None:
    """After the consumer stops, no receive of its is left behind to swallow a message."""
    layer = get_channel_layer()
    ws = WebsocketCommunicator(FAMILIES[family][0].as_asgi(), "/ws/")
    await connected(ws)
    await ws.send_to(text_data="whoami")
    channel = await ws.receive_from(timeout=wait())
    await ws.disconnect(timeout=wait())
    await layer.send(channel, {"type": "room.message", "text": "late"})
    await asyncio.sleep(0.05)
    message = await asyncio.wait_for(layer.receive(channel), wait())
    assert message == {"type": "room.message", "text": "late"}


async def test_server_cancel_leaves_no_task(family: str) -> None:
    before = asyncio.all_tasks()
    ws = WebsocketCommunicator(FAMILIES[family][0].as_asgi(), "/ws/")
    await connected(ws)
    ws.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ws.future
    await asyncio.sleep(0.05)
    assert asyncio.all_tasks() - before == set()
