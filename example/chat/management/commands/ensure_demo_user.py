"""``manage.py ensure_demo_user``: the accounts the demo logs in with, created once.

Without options it ensures ``demo`` / ``demo`` and ``demo2`` / ``demo2`` (two people to chat).
With ``--username`` (and ``--password``, default: the username) it ensures that one account.
Running it again changes nothing; a user whose password differs gets the given one back.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

DEMO_USERS = (("demo", "demo"), ("demo2", "demo2"))


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
