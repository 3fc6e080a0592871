"""The chat's doors (issue 13): crashes that leak nothing, membership, tokens, unmatched paths.

Through the whole ASGI application, on our layer and a real Redis, as test_chat_consumer.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from chat_helpers import receive_frame, wait, websocket
from django.contrib.auth.models import User

from channels_scale.auth import issue_token
from channels_scale.closecodes import HTTP_NOT_FOUND, CloseCode, ErrorCode
from channels_scale.presence import Presence
from chat.consumers import room_group
from chat.models import Message, Room

pytestmark = [pytest.mark.django_db(transaction=True)]

Cookie = Callable[[User], bytes]
MakeUser = Callable[[str], User]


async def closed_with(communicator: Any) -> int:
    while True:
        output = await communicator.receive_output(timeout=wait())
        if output["type"] == "websocket.close":
            return int(output["code"])


async def members_with_cookies(make_user: MakeUser, session_cookie: Cookie, *names: str) -> Any:
    def setup() -> list[bytes]:
        users = [make_user(name) for name in names]
        Room.objects.get_or_create(name="lobby")[0].members.add(*users)
        return [session_cookie(user) for user in users]

    return await database_sync_to_async(setup)()


async def joined(communicator: Any) -> None:
    """Connect and wait for ``presence.state`` (the connection is in the room and its presence)."""
    assert (await communicator.connect(timeout=wait()))[0]
    while (await communicator.receive_json_from(timeout=wait()))["type"] != "presence.state":
        pass


async def online(group: str) -> list[Any]:
    return [user["name"] for user in await Presence(get_channel_layer()).members(group)]


# -- consumers never leak -----------------------------------------------------------------------

CRASHES = {
    "lone-surrogate": '{"type": "message", "text": "\\ud800"}',
    "nested-10000": "[" * 10_000 + "]" * 10_000,
    "nested-in-text": '{"type": "message", "text": ' + "[" * 5_000 + "]" * 5_000 + "}",
    "binary": b"\x00\x01",
    "not-json": "{",
    "wrong-shape": '{"type": "message", "text": 5}',
}


async def test_200_crashed_consumers_leave_presence_and_groups_as_they_were(
    make_user: MakeUser, session_cookie: Cookie, caplog: pytest.LogCaptureFixture
) -> None:
    """Each way a client crashed its consumer before (issue 13), 200 connections in all."""
    caplog.set_level(logging.INFO)
    # Four crashers of 50 each: one user would meet the chat's own limits first (120 messages a
    # minute per user; 20 connections per user, which a leak of connections would also hit).
    crashers = [f"crasher{i}" for i in range(4)]
    cookies = await members_with_cookies(make_user, session_cookie, "watcher", *crashers)
    layer = get_channel_layer()
    group = room_group("lobby")
    async with websocket("/ws/chat/lobby/", cookies[0]) as watcher:
        await joined(watcher)
        baseline_online = await online(group)
        baseline_groups = layer.stats()["groups"]  # groups with members in this process
        assert baseline_online == ["watcher"]
        frames = list(CRASHES.values())
        for i in range(200):
            frame = frames[i % len(frames)]
            async with websocket("/ws/chat/lobby/", cookies[1 + i % 4]) as ws:
                assert (await ws.connect(timeout=wait()))[0]
                if isinstance(frame, bytes):
                    await ws.send_to(bytes_data=frame)
                else:
                    await ws.send_to(text_data=frame)
                assert await closed_with(ws) == CloseCode.POLICY_VIOLATION
                await ws.wait(timeout=wait())  # the consumer ended by itself, nothing raised
        assert await online(group) == baseline_online
        assert layer.stats()["groups"] == baseline_groups
        # The watcher still gets the room's messages, and nobody else does: a crashed channel
        # left in the group would hold a buffered copy (the layer forgets empty buffers only
        # every 30 s, so their count says nothing; a message waiting in one does).
        await watcher.send_json_to({"type": "message", "text": "still here"})
        frame = await receive_frame(watcher)
        while frame.get("type") != "message":
            frame = await receive_frame(watcher)
        assert frame["text"] == "still here"
        assert layer.stats()["buffered"] == 0
    stored = await database_sync_to_async(lambda: list(Message.objects.values_list("text")))()
    assert stored == [("still here",)]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback for a client's input


async def test_ping_in_any_json_spelling_is_answered(
    make_user: MakeUser, session_cookie: Cookie
) -> None:
    (cookie,) = await members_with_cookies(make_user, session_cookie, "demo")
    async with websocket("/ws/chat/lobby/", cookie) as ws:
        assert (await ws.connect(timeout=wait()))[0]
        for ping in ('{"type": "ping"}', '{"type":"ping"}', ' {\n"type" : "ping"} '):
            await ws.send_to(text_data=ping)
            assert await receive_frame(ws) == {"type": "pong"}


async def test_a_bad_offset_is_a_new_client(make_user: MakeUser, session_cookie: Cookie) -> None:
    (cookie,) = await members_with_cookies(make_user, session_cookie, "demo")
    async with websocket("/ws/chat/lobby/?epoch=abc&offset=%C2%B2", cookie) as ws:  # offset=²
        assert (await ws.connect(timeout=wait()))[0]
        assert (await ws.receive_json_from(timeout=wait()))["type"] == "welcome"


# -- membership ---------------------------------------------------------------------------------


async def test_non_member_gets_4403_and_member_removed_gets_an_error_frame(
    make_user: MakeUser, session_cookie: Cookie
) -> None:
    member, outsider = await members_with_cookies(make_user, session_cookie, "demo", "eve")
    await database_sync_to_async(
        lambda: Room.objects.get(name="lobby").members.remove(User.objects.get(username="eve"))
    )()
    async with websocket("/ws/chat/lobby/", outsider) as ws:
        assert (await ws.connect(timeout=wait()))[0]
        assert await closed_with(ws) == CloseCode.FORBIDDEN
    async with websocket("/ws/chat/lobby/", member) as ws:
        assert (await ws.connect(timeout=wait()))[0]
        await database_sync_to_async(lambda: Room.objects.get(name="lobby").members.clear())()
        await ws.send_json_to({"type": "message", "text": "am I still in?"})
        error = await receive_frame(ws)
        assert (error["type"], error["code"]) == ("error", ErrorCode.FORBIDDEN)
    assert not await database_sync_to_async(Message.objects.exists)()


async def test_creator_of_a_new_room_is_its_member(
    make_user: MakeUser, session_cookie: Cookie
) -> None:
    cookie = await database_sync_to_async(lambda: session_cookie(make_user("founder")))()
    async with websocket("/ws/chat/new-room/", cookie) as ws:
        assert (await ws.connect(timeout=wait()))[0]
        assert (await ws.receive_json_from(timeout=wait()))["type"] == "welcome"
    names = await database_sync_to_async(
        lambda: list(Room.objects.get(name="new-room").members.values_list("username", flat=True))
    )()
    assert names == ["founder"]


# -- tokens -------------------------------------------------------------------------------------


async def test_token_logs_a_client_in_at_the_handshake(make_user: MakeUser) -> None:
    def setup() -> int:
        user = make_user("app")
        Room.objects.create(name="lobby").members.add(user)
        return user.pk

    pk = await database_sync_to_async(setup)()
    good = issue_token(pk, "chat", ttl=60)
    async with websocket(f"/ws/chat/lobby/?token={good}") as ws:
        assert (await ws.connect(timeout=wait()))[0]
        await ws.send_json_to({"type": "message", "text": "from an app"})
        assert (await receive_frame(ws))["user"] == "app"
    refused = {
        "expired": issue_token(pk, "chat", ttl=0.001),
        "other-audience": issue_token(pk, "notifications", ttl=60),
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "garbage": "x" * 5000,
    }
    for token in refused.values():
        async with websocket(f"/ws/chat/lobby/?token={token}") as ws:
            assert (await ws.connect(timeout=wait()))[0]
            assert await closed_with(ws) == CloseCode.UNAUTHORIZED


# -- unmatched websocket paths: HTTP 404, no traceback ------------------------------------------


async def handshake(path: str) -> list[dict[str, Any]]:
    """What the app sends for a handshake on ``path`` (the server offers HTTP responses)."""
    from config.asgi import application

    sent: list[dict[str, Any]] = []
    messages = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "websocket.disconnect", "code": 1006}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "extensions": {"websocket.http.response": {}},
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    await application(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    "path",
    [
        "/ws/chat/a/b/",
        "/ws/chat/a!/",
        "/ws/chat/*/",
        "/ws/chat/" + "x" * 1000 + "/",
        "/ws/chat//",
        "/ws/chat/./",
        "/ws/chat/../",
        "/ws/broadcast/../",
        "/ws/nothing-here/",
    ],
    ids=["slash", "bang", "star", "1000-chars", "empty", "dot", "dotdot", "broadcast-dotdot", "x"],
)
async def test_unmatched_path_is_http_404(path: str, caplog: pytest.LogCaptureFixture) -> None:
    sent = await handshake(path)
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == HTTP_NOT_FOUND
    assert not [r for r in caplog.records if r.exc_info]


def test_messages_json_of_a_room_answers_403_to_non_members(
    client: Any, make_user: MakeUser
) -> None:
    owner, outsider = make_user("owner"), make_user("outsider")
    Room.objects.create(name="lobby").members.add(owner)
    client.force_login(outsider)
    response = client.get("/rooms/lobby/messages.json")
    assert response.status_code == 403
    assert json.loads(response.content) == {"error": "forbidden"}
    assert client.get("/rooms/lobby/").status_code == 403
    assert client.post("/", {"name": "lobby"}).status_code == 403
    client.force_login(owner)
    assert client.get("/rooms/lobby/messages.json").status_code == 200


def test_login_is_throttled_per_username(client: Any, make_user: MakeUser, settings: Any) -> None:
    make_user("demo")
    settings.LOGIN_FAILURES_PER_USER = 3
    for _ in range(3):
        assert client.post("/login/", {"username": "demo", "password": "wrong"}).status_code == 200
    refused = client.post("/login/", {"username": "demo", "password": "demo"})
    assert refused.status_code == 429  # even the right password: the window is closed
    assert refused["Retry-After"] == str(settings.LOGIN_FAILURE_WINDOW)
    other = client.post("/login/", {"username": "someone", "password": "x"})
    assert other.status_code == 200  # other usernames are not affected (IP budget is 20)
