"""Our consumers' doors: failures that never leak, bounded JSON, limits, authorization, 404."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from channels_scale import consumers
from channels_scale.closecodes import HTTP_NOT_FOUND, CloseCode
from channels_scale.consumers.limits import (
    ProtocolViolation,
    TokenBucket,
    json_depth_over,
    loads_bounded,
)
from channels_scale.consumers.notfound import websocket_not_found
from tests.consumers.conftest import wait

pytestmark = pytest.mark.django_db  # see test_ours.py: the DB-hygiene check needs the access


# -- pure parts ---------------------------------------------------------------------------------


def test_token_bucket_spends_and_refills() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.49  # 0.98 tokens
    assert not bucket.take()
    now[0] = 0.5
    assert bucket.take()
    now[0] = 100.0  # saved tokens stop at the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_loads_bounded() -> None:
    assert loads_bounded('{ "type" : "ping" }') == {"type": "ping"}
    assert loads_bounded('["[[[[", {"a": "]]]"}]', max_depth=2) == ["[[[[", {"a": "]]]"}]
    assert loads_bounded('"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate *pair* is fine
    deep = "[" * 10_000 + "]" * 10_000
    assert json_depth_over(deep, 32)
    for bad in (deep, '{"text": "\\ud800"}', '["ok", {"\\udfff": 1}]', "{nope", "[1,"):
        with pytest.raises(ProtocolViolation):
            loads_bounded(bad)
    assert loads_bounded("[" * 32 + "]" * 32) is not None
    with pytest.raises(ProtocolViolation):
        loads_bounded("[" * 33 + "]" * 33)


# -- failures: closed with a documented code, released --------------------------------------------


class Member(consumers.AsyncJsonWebsocketConsumer):
    groups = ["guarded"]
    disconnects: list[int] = []

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content == "crash":
            raise KeyError("a bug")
        if content == "refuse":
            raise ProtocolViolation("not that")
        await self.send_json(content)

    async def disconnect(self, code: int) -> None:
        self.disconnects.append(code)


async def output_close(ws: WebsocketCommunicator) -> dict[str, Any]:
    while True:
        output: dict[str, Any] = await ws.receive_output(timeout=wait())
        if output["type"] == "websocket.close":
            return output


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('"crash"', CloseCode.INTERNAL_ERROR),
        ('"refuse"', CloseCode.POLICY_VIOLATION),
        ('{"text": "\\ud800"}', CloseCode.POLICY_VIOLATION),
        ("[" * 10_000 + "]" * 10_000, CloseCode.POLICY_VIOLATION),
        ("{not json", CloseCode.POLICY_VIOLATION),
    ],
    ids=["handler-raises", "protocol-violation", "lone-surrogate", "nested-10000", "bad-json"],
)
async def test_failure_closes_and_releases(
    frame: str, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    Member.disconnects = []
    layer = get_channel_layer()
    ws = WebsocketCommunicator(Member.as_asgi(), "/ws/")
    assert (await ws.connect(timeout=wait()))[0]
    await ws.send_to(text_data=frame)
    assert (await output_close(ws))["code"] == code
    await asyncio.wait_for(ws.future, wait())
    assert ws.future.exception() is None  # nothing reached the server
    assert Member.disconnects == [code]  # disconnect() ran: groups and the rest released
    # Left the group: a group message reaches nobody (the in-memory layer would queue it).
    watcher = WebsocketCommunicator(Member.as_asgi(), "/ws/")
    assert (await watcher.connect(timeout=wait()))[0]
    await layer.group_send("guarded", {"type": "client.frame", "text": "hello"})
    assert await watcher.receive_from(timeout=wait()) == "hello"
    await watcher.disconnect(timeout=wait())
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == (1 if code == CloseCode.INTERNAL_ERROR else 0)


# -- slow client: the outgoing queue ------------------------------------------------------------


class Stalled:
    """A fake ASGI server whose client never reads: ``send`` of data blocks once ``accept``-ed."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.unblock = asyncio.Event()
        self.accepted = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send" and len(self.sent) >= 3:
            await self.unblock.wait()  # the socket's buffer is full: the client stopped reading
        self.sent.append(message)
        if message["type"] == "websocket.accept":
            self.accepted.set()


async def test_client_that_does_not_read_is_closed_with_1013(settings: Any) -> None:
    settings.WEBSOCKET_MAX_OUTGOING_BYTES = 10_000
    before = consumers.COUNTERS["slow_client"]
    server = Stalled()
    layer = get_channel_layer()
    await server.inbox.put({"type": "websocket.connect"})
    task = asyncio.create_task(Member.as_asgi()({"type": "websocket", "path": "/ws/"},
                                                server.receive, server.send))  # fmt: skip
    await asyncio.wait_for(server.accepted.wait(), wait())  # in the group from here on
    frame = "x" * 1000
    for _ in range(14):  # 2 sent, 1 blocked in the server, 10 fill the queue, 1 over the bound
        await layer.group_send("guarded", {"type": "client.frame", "text": frame})
    await asyncio.wait_for(task, wait())  # the consumer ended on its own
    assert consumers.COUNTERS["slow_client"] == before + 1
    # The queued frames were dropped; the close frame went to the server (which waits for the
    # socket up to 2 s, then drops the connection).
    assert server.sent[0]["type"] == "websocket.accept"
    assert server.sent[-1] == {
        "type": "websocket.close", "code": CloseCode.TRY_AGAIN_LATER, "reason": "too slow"
    }  # fmt: skip
    assert Member.disconnects[-1] == CloseCode.TRY_AGAIN_LATER


async def test_client_that_reads_slowly_but_within_the_bound_stays(settings: Any) -> None:
    settings.WEBSOCKET_MAX_OUTGOING_BYTES = 100_000
    server = Stalled()
    layer = get_channel_layer()
    await server.inbox.put({"type": "websocket.connect"})
    task = asyncio.create_task(Member.as_asgi()({"type": "websocket", "path": "/ws/"},
                                                server.receive, server.send))  # fmt: skip
    await asyncio.wait_for(server.accepted.wait(), wait())  # in the group from here on
    for i in range(50):
        await layer.group_send("guarded", {"type": "client.frame", "text": f"{i:04d}" * 250})
    server.unblock.set()
    await server.inbox.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(task, wait())
    texts = [m["text"] for m in server.sent if m["type"] == "websocket.send"]
    assert texts == [f"{i:04d}" * 250 for i in range(50)]  # all of them, in order


# -- rates, idle, connections per user, authorization -------------------------------------------


class Limited(consumers.AsyncWebsocketConsumer):
    message_rate = 1.0
    message_burst = 3
    idle_timeout = 0.3
    max_connections_per_user = 2

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data)


class User:
    is_authenticated = True

    def __init__(self, pk: int) -> None:
        self.pk = pk


def client(cls: type[Any], user: Any = None, path: str = "/ws/") -> WebsocketCommunicator:
    ws = WebsocketCommunicator(cls.as_asgi(), path)
    if user is not None:
        ws.scope["user"] = user  # the app task has not started yet: it sees this scope
    return ws


async def test_message_rate_per_connection_closes_4429() -> None:
    ws = client(Limited)
    assert (await ws.connect(timeout=wait()))[0]
    for i in range(3):
        await ws.send_to(text_data=str(i))
        assert await ws.receive_from(timeout=wait()) == str(i)
    await ws.send_to(text_data="one too many")
    assert await output_close(ws) == {
        "type": "websocket.close", "code": CloseCode.RATE_LIMITED, "reason": "too many messages"
    }  # fmt: skip


async def test_idle_connection_closes_4408() -> None:
    ws = client(Limited)
    assert (await ws.connect(timeout=wait()))[0]
    await ws.send_to(text_data="hi")
    assert await ws.receive_from(timeout=wait()) == "hi"
    assert (await output_close(ws))["code"] == CloseCode.IDLE_TIMEOUT


async def test_connections_per_user() -> None:
    first, second, third = (client(Limited, User(7)) for _ in range(3))
    other = client(Limited, User(8))
    for ws in (first, second, other):
        assert (await ws.connect(timeout=wait()))[0]
    assert (await third.connect(timeout=wait()))[0]  # accepted, then closed: the code is visible
    assert (await output_close(third))["code"] == CloseCode.RATE_LIMITED
    await first.disconnect(timeout=wait())
    again = client(Limited, User(7))
    assert (await again.connect(timeout=wait()))[0]
    await again.send_to(text_data="in")
    assert await again.receive_from(timeout=wait()) == "in"
    for ws in (second, other, again):
        await ws.disconnect(timeout=wait())


class Private(consumers.AsyncWebsocketConsumer):
    groups = ["staff"]

    async def authorize(self, action: str, group: str) -> bool:
        return self.scope.get("query_string") == b"staff"


async def test_authorize_refuses_a_group_with_4403() -> None:
    ws = WebsocketCommunicator(Private.as_asgi(), "/ws/")
    assert (await ws.connect(timeout=wait()))[0]
    assert (await output_close(ws))["code"] == CloseCode.FORBIDDEN
    staff = WebsocketCommunicator(Private.as_asgi(), "/ws/?staff")
    assert (await staff.connect(timeout=wait()))[0]
    await get_channel_layer().group_send("staff", {"type": "client.frame", "text": "memo"})
    assert await staff.receive_from(timeout=wait()) == "memo"
    await staff.disconnect(timeout=wait())


class Joiner(consumers.AsyncWebsocketConsumer):
    async def authorize(self, action: str, group: str) -> bool:
        return group != "secret"

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if await self.join_group(str(text_data)):
            await self.send(text_data="joined " + str(text_data))


async def test_join_group_after_accept_refused_with_4403() -> None:
    ws = WebsocketCommunicator(Joiner.as_asgi(), "/ws/")
    assert (await ws.connect(timeout=wait()))[0]
    await ws.send_to(text_data="public")
    assert await ws.receive_from(timeout=wait()) == "joined public"
    await ws.send_to(text_data="secret")  # already accepted: the close comes at once
    assert await ws.receive_output(timeout=wait()) == {
        "type": "websocket.close", "code": CloseCode.FORBIDDEN, "reason": "forbidden"
    }  # fmt: skip


# -- unmatched paths --------------------------------------------------------------------------


async def test_not_found_answers_http_404_or_closes_before_accept() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws/x!/", "extensions": {"websocket.http.response": {}}}
    await websocket_not_found(scope, receive, send)
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == HTTP_NOT_FOUND
    sent.clear()
    await websocket_not_found({"type": "websocket", "path": "/ws/x!/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000}]  # the server answers HTTP 403
