"""Rooms and the messages posted in them.

A room's name is also its URL segment and (prefixed with ``chat.``) its channel-layer group, so it
is limited to the characters both accept: ``[A-Za-z0-9_.-]{1,80}``, except ``.`` and ``..``
(a URL path collapses them).

A room has members: only they may read it (page, ``messages.json``), join its websocket and post.
The user who creates a room is its first member; ``manage.py ensure_demo_user`` makes the demo
users members of the demo rooms.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

# The lookahead refuses "." and ".." whatever follows them (the end of a name, or "/" in a URL).
ROOM_NAME_PATTERN = r"(?!\.\.?(?![A-Za-z0-9_.-]))[A-Za-z0-9_.-]{1,80}"
ROOM_NAME_MAX_LENGTH = 80

room_name_validator = RegexValidator(
    rf"^{ROOM_NAME_PATTERN}\Z",
    "Use 1 to 80 letters, digits, dots, dashes or underscores (not . or ..).",
)


class Room(models.Model):
    """A chat room, created by the first user who asks for it by name."""

    name = models.CharField(
        max_length=ROOM_NAME_MAX_LENGTH, unique=True, validators=[room_name_validator]
    )
    created = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="chat_rooms", blank=True
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    """One message posted in a room. Read newest-first per room, hence the (room, created) index."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages"
    )
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["room", "created"], name="chat_msg_room_created")]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}: {self.text[:40]}"


def is_member(room_name: str, user_id: int) -> bool:
    """Whether user ``user_id`` is a member of the room called ``room_name`` (False: no room)."""
    return Room.members.through.objects.filter(room__name=room_name, user_id=user_id).exists()


def join_or_create(room_name: str, user_id: int) -> tuple[Room | None, bool]:
    """``(room, created)`` when the user may use it: an existing room of which the user is a
    member, or a new room (its creator becomes its first member); ``(None, False)`` otherwise."""
    room, created = Room.objects.get_or_create(name=room_name)
    if created:
        room.members.add(user_id)
        return room, True
    if room.members.filter(pk=user_id).exists():
        return room, False
    return None, False
