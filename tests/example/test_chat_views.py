"""The chat's pages: login, logout, the room list, a room's history."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chat.models import Message, Room
from chat.views import HISTORY_SIZE

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/rooms/lobby/"])
def test_pages_need_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_login_with_password_then_rooms_page(
    client: Client, make_user: Callable[[str], User]
) -> None:
    make_user("demo")
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "demo", "password": "demo"})
    assert response.status_code == 302
    assert response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert b"demo" in page.content


def test_login_with_wrong_password_stays_on_form(
    client: Client, make_user: Callable[[str], User]
) -> None:
    make_user("demo")
    response = client.post("/login/", {"username": "demo", "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post(client: Client, make_user: Callable[[str], User]) -> None:
    client.force_login(make_user("demo"))
    assert client.get("/logout/").status_code == 405
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert client.get("/").status_code == 302


def test_create_room_then_join_it_again(client: Client, make_user: Callable[[str], User]) -> None:
    client.force_login(make_user("demo"))
    response = client.post("/", {"name": "lobby"})
    assert response.status_code == 302
    assert response["Location"] == "/rooms/lobby/"
    assert client.post("/", {"name": "lobby"})["Location"] == "/rooms/lobby/"
    assert list(Room.objects.values_list("name", flat=True)) == ["lobby"]
    assert b'href="/rooms/lobby/"' in client.get("/").content


@pytest.mark.parametrize("name", ["", "has space", "slash/y", "x" * 81, "caf\u00e9"])
def test_create_room_refuses_bad_names(
    client: Client, make_user: Callable[[str], User], name: str
) -> None:
    client.force_login(make_user("demo"))
    response = client.post("/", {"name": name})
    assert response.status_code == 400
    assert not Room.objects.exists()


def test_room_page_shows_the_last_messages_oldest_first(
    client: Client, make_user: Callable[[str], User]
) -> None:
    demo = make_user("demo")
    room = Room.objects.create(name="lobby")
    room.members.add(demo)
    Message.objects.bulk_create(
        Message(room=room, user=demo, text=f"msg-{i:03d}") for i in range(HISTORY_SIZE + 10)
    )
    Message.objects.create(room=Room.objects.create(name="other"), user=demo, text="elsewhere")
    client.force_login(demo)
    response = client.get("/rooms/lobby/")
    assert response.status_code == 200
    page = response.content.decode()
    shown = [f"msg-{i:03d}" for i in range(10, HISTORY_SIZE + 10)]
    assert all(text in page for text in shown)
    assert "msg-009" not in page
    assert page.index("msg-010") < page.index(f"msg-{HISTORY_SIZE + 9:03d}")
    assert "elsewhere" not in page
    assert "chat/chat.js" in page


def test_room_page_escapes_message_text(client: Client, make_user: Callable[[str], User]) -> None:
    demo = make_user("demo")
    lobby = Room.objects.create(name="lobby")
    lobby.members.add(demo)
    Message.objects.create(room=lobby, user=demo, text="<b>hi</b>")
    client.force_login(demo)
    page = client.get("/rooms/lobby/").content
    assert b"&lt;b&gt;hi&lt;/b&gt;" in page
    assert b"<b>hi</b>" not in page


def test_room_page_of_a_new_room_is_empty_and_creates_nothing(
    client: Client, make_user: Callable[[str], User]
) -> None:
    client.force_login(make_user("demo"))
    response = client.get("/rooms/new-room/")
    assert response.status_code == 200
    assert b"No messages yet" in response.content
    assert not Room.objects.exists()


def test_room_url_refuses_bad_names(client: Client, make_user: Callable[[str], User]) -> None:
    client.force_login(make_user("demo"))
    assert client.get("/rooms/" + "x" * 81 + "/").status_code == 404
