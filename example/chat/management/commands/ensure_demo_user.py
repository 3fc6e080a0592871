"""``manage.py ensure_demo_user``: the accounts the demo logs in with, created once.

Without options it ensures ``demo`` / ``demo`` and ``demo2`` / ``demo2`` (two people to chat), and
the demo rooms (:data:`DEMO_ROOMS`) with both as members (rooms have members: others get 4403).
With ``--username`` (and ``--password``, default: the username) it ensures that one account and
makes it a member of the demo rooms.
Running it again changes nothing; a user whose password differs gets the given one back.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from chat.models import Room

DEMO_USERS = (("demo", "demo"), ("demo2", "demo2"))
# "lobby": the room to try first; "e2e": the room the browser end-to-end test uses.
DEMO_ROOMS = ("lobby", "e2e")


class Command(BaseCommand):
    help = "Create the demo users (demo/demo, demo2/demo2) or the one given; idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", help="ensure only this user (default: demo and demo2)")
        parser.add_argument("--password", help="its password (default: the username)")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str | None = options["username"]
        password: str | None = options["password"]
        if username is None:
            if password is not None:
                raise CommandError("--password needs --username")
            accounts = list(DEMO_USERS)
        else:
            if not username.strip():
                raise CommandError("--username must not be empty")
            accounts = [(username, password if password is not None else username)]
        for name, secret in accounts:
            self.stdout.write(f"{ensure_user(name, secret)} user {name}")
        ensure_demo_rooms([name for name, _ in accounts])


def ensure_demo_rooms(usernames: list[str]) -> None:
    """The demo rooms exist and the given users are members of each."""
    model = get_user_model()
    users = list(model._default_manager.filter(**{f"{model.USERNAME_FIELD}__in": usernames}))
    for name in DEMO_ROOMS:
        room, _ = Room.objects.get_or_create(name=name)
        room.members.add(*users)


def ensure_user(username: str, password: str) -> str:
    """Make sure ``username`` exists with ``password``; return what was done."""
    model = get_user_model()
    with transaction.atomic():
        user, created = model._default_manager.get_or_create(**{model.USERNAME_FIELD: username})
        if created:
            user.set_password(password)
            user.save()
            return "created"
        if not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
            return "reset password of"
    return "kept"
