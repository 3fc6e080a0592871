"""The chat websocket through the whole ASGI application, on our layer and a real Redis.

The consumer reaches the database from asgiref's thread, hence ``transaction=True``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from chat_helpers import nothing_but_control, receive_frame, wait, websocket
from django.contrib.auth.models import User

from channels_scale.closecodes import CloseCode
from chat.models import Message, Room
from chat.protocol import MAX_TEXT_CHARS

pytestmark = [pytest.mark.django_db(transaction=True)]

Cookie = Callable[[User], bytes]
MakeUser = Callable[[str], User]


async def closed_with(communicator: Any) -> int:
    """Wait for the server's close frame (skipping frames sent before it) and return its code."""
    while True:
        output = await communicator.receive_output(timeout=wait())
        if output["type"] == "websocket.close":
            return int(output["code"])
        assert output["type"] == "websocket.send", output


@database_sync_to_async
def stored_messages() -> list[tuple[str, str, str]]:
    return [
        (m.room.name, m.user.username, m.text)
        for m in Message.objects.select_related("room", "user").order_by("id")
    ]


async def test_anonymous_is_closed_with_4401() -> None:
    async with websocket("/ws/chat/lobby/") as ws:
        connected, _ = await ws.connect(timeout=wait())
        assert connected
        assert await closed_with(ws) == CloseCode.UNAUTHORIZED
    assert not await database_sync_to_async(Room.objects.exists)()


async def test_foreign_origin_is_refused(make_user: MakeUser, session_cookie: Cookie) -> None:
    cookie = await database_sync_to_async(lambda: session_cookie(make_user("demo")))()
    async with websocket("/ws/chat/lobby/", cookie, origin=b"http://evil.example") as ws:
        connected, code = await ws.connect(timeout=wait())
        assert not connected
        assert code == CloseCode.POLICY_VIOLATION


async def test_two_users_receive_a_message_and_it_is_stored(
    make_user: MakeUser, session_cookie: Cookie
) -> None:
    def setup() -> list[bytes]:
        users = [make_user(name) for name in ("demo", "demo2", "eve")]
        Room.objects.create(name="lobby").members.add(*users[:2])
        return [session_cookie(user) for user in users]

    cookies = await database_sync_to_async(setup)()
    async with (
        websocket("/ws/chat/lobby/", cookies[0]) as alice,
        websocket("/ws/chat/lobby/", cookies[1]) as bob,
        websocket("/ws/chat/elsewhere/", cookies[2]) as eve,
    ):
        for ws in (alice, bob, eve):
            connected, _ = await ws.connect(timeout=wait())
            assert connected
        await alice.send_json_to({"type": "message", "text": "  hello, room  "})
        got_alice = await receive_frame(alice)
        got_bob = await receive_frame(bob)
        assert got_alice == got_bob
        assert got_alice["type"] == "message"
        assert got_alice["user"] == "demo"
        assert got_alice["text"] == "hello, room"
        assert isinstance(got_alice["id"], int)
        assert isinstance(got_alice["created"], str)
        assert await nothing_but_control(eve)

        await bob.send_json_to({"type": "message", "text": "hi demo"})
        assert (await receive_frame(alice))["user"] == "demo2"
        assert (await receive_frame(bob))["text"] == "hi demo"

    assert await stored_messages() == [
        ("lobby", "demo", "hello, room"),
        ("lobby", "demo2", "hi demo"),
    ]
    message = await database_sync_to_async(Message.objects.get)(text="hello, room")
    assert message.pk == got_alice["id"]
    assert message.created.isoformat() == got_alice["created"]


async def test_empty_text_is_ignored(make_user: MakeUser, session_cookie: Cookie) -> None:
    cookie = await database_sync_to_async(lambda: session_cookie(make_user("demo")))()
    async with websocket("/ws/chat/lobby/", cookie) as ws:
        assert (await ws.connect(timeout=wait()))[0]
        await ws.send_json_to({"type": "message", "text": " \n "})
        assert await nothing_but_control(ws)
    assert await stored_messages() == []


async def test_text_too_long_gets_an_error_and_the_connection_stays(
    make_user: MakeUser, session_cookie: Cookie
) -> None:
    cookie = await database_sync_to_async(lambda: session_cookie(make_user("demo")))()
    async with websocket("/ws/chat/lobby/", cookie) as ws:
        assert (await ws.connect(timeout=wait()))[0]
        await ws.send_json_to({"type": "message", "text": "x" * (MAX_TEXT_CHARS + 1)})
        error = await receive_frame(ws)
        assert error["type"] == "error"
        assert error["code"] == "text_too_long"
        await ws.send_json_to({"type": "message", "text": "x" * MAX_TEXT_CHARS})
        assert len((await receive_frame(ws))["text"]) == MAX_TEXT_CHARS
    assert len(await stored_messages()) == 1


@pytest.mark.parametrize(
    ("frame", "is_text"),
    [
        ("not json", True),
        ("[1, 2]", True),
        (json.dumps({"type": "message"}), True),
        (json.dumps({"type": "message", "text": 5}), True),
        (json.dumps({"type": "typing"}), True),
        (b"\x00binary", False),
    ],
)
async def test_malformed_frame_is_closed_with_1008(
    make_user: MakeUser, session_cookie: Cookie, frame: str | bytes, is_text: bool
) -> None:
    cookie = await database_sync_to_async(lambda: session_cookie(make_user("demo")))()
    async with websocket("/ws/chat/lobby/", cookie) as ws:
        assert (await ws.connect(timeout=wait()))[0]
        if is_text:
            await ws.send_to(text_data=frame)
        else:
            await ws.send_to(bytes_data=frame)
        assert await closed_with(ws) == CloseCode.POLICY_VIOLATION
    assert await stored_messages() == []


async def test_frame_over_the_maximum_size_is_closed_with_1009(
    make_user: MakeUser, session_cookie: Cookie, settings: Any
) -> None:
    settings.WEBSOCKET_MAX_MESSAGE_BYTES = 200
    cookie = await database_sync_to_async(lambda: session_cookie(make_user("demo")))()
    async with websocket("/ws/chat/lobby/", cookie) as ws:
        assert (await ws.connect(timeout=wait()))[0]
        fits = json.dumps({"type": "message", "text": "a" * 150})
        await ws.send_to(text_data=fits)
        assert (await receive_frame(ws))["text"] == "a" * 150
        # 100 two-byte characters: 140 characters but over 200 UTF-8 bytes.
        over = json.dumps({"type": "message", "text": "\u00e9" * 100}, ensure_ascii=False)
        assert len(over) <= 200 < len(over.encode())
        await ws.send_to(text_data=over)
        assert await closed_with(ws) == CloseCode.MESSAGE_TOO_BIG
    assert len(await stored_messages()) == 1


async def test_redis_down_when_publishing_keeps_the_connection_and_the_message(
    make_user: MakeUser, session_cookie: Cookie, settings: Any, redis_server: Any
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_scale.layer.RedisChannelLayer",
            "CONFIG": {
                "hosts": [redis_server.url],
                "send_timeout": 0.5,
                "history": {"chat.*": {"size": 100, "ttl": 60}},
            },
        }
    }
    cookie = await database_sync_to_async(lambda: session_cookie(make_user("demo")))()
    async with websocket("/ws/chat/lobby/", cookie) as ws:
        assert (await ws.connect(timeout=wait()))[0]
        await ws.send_json_to({"type": "message", "text": "first"})
        assert (await receive_frame(ws))["text"] == "first"
        redis_server.stop(kill=True)
        await ws.send_json_to({"type": "message", "text": "while redis is down"})
        error = await receive_frame(ws)
        assert (error["type"], error["code"]) == ("error", "not_delivered")
        redis_server.start()  # a new, empty Redis: the room's history and epoch are gone
        await ws.send_json_to({"type": "message", "text": "after"})
        # Same connection, still alive; its position belongs to the lost epoch, so it is told to
        # reload from the database (which has all three messages) instead of missing a gap.
        reload = await receive_frame(ws)
        assert (reload["type"], reload["reason"]) == ("reload", "epoch")
        await ws.send_json_to({"type": "message", "text": "live again"})
        assert (await receive_frame(ws))["text"] == "live again"
    assert [text for _, _, text in await stored_messages()] == [
        "first",
        "while redis is down",
        "after",
        "live again",
    ]
