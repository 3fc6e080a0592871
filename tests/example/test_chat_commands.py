"""``manage.py ensure_demo_user``."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("ensure_demo_user", *args, stdout=out)
    return out.getvalue()


def test_creates_both_demo_users_once() -> None:
    assert run() == "created user demo\ncreated user demo2\n"
    first = {u.username: u.password for u in User.objects.all()}
    assert run() == "kept user demo\nkept user demo2\n"
    assert {u.username: u.password for u in User.objects.all()} == first
    assert authenticate(username="demo", password="demo") is not None
    assert authenticate(username="demo2", password="demo2") is not None


def test_given_user_and_password() -> None:
    assert run("--username", "alice", "--password", "s3cret") == "created user alice\n"
    assert run("--username", "alice", "--password", "s3cret") == "kept user alice\n"
    assert authenticate(username="alice", password="s3cret") is not None
    assert not User.objects.filter(username="demo").exists()


def test_puts_back_a_changed_password() -> None:
    run()
    user = User.objects.get(username="demo")
    user.set_password("changed")
    user.save()
    assert run("--username", "demo") == "reset password of user demo\n"
    assert authenticate(username="demo", password="demo") is not None


def test_password_without_username_is_an_error() -> None:
    with pytest.raises(CommandError, match="--username"):
        run("--password", "x")


def test_demo_users_are_members_of_the_demo_rooms() -> None:
    from chat.management.commands.ensure_demo_user import DEMO_ROOMS
    from chat.models import Room

    run()
    run("--username", "alice")
    for name in DEMO_ROOMS:
        members = Room.objects.get(name=name).members.values_list("username", flat=True)
        assert sorted(members) == ["alice", "demo", "demo2"]
