"""Rooms and the messages posted in them.

A room's name is also its URL segment and (prefixed with ``chat.``) its channel-layer group, so it
is limited to the characters both accept: ``[A-Za-z0-9_.-]{1,80}``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

ROOM_NAME_PATTERN = r"[A-Za-z0-9_.-]{1,80}"
ROOM_NAME_MAX_LENGTH = 80

room_name_validator = RegexValidator(
    rf"^{ROOM_NAME_PATTERN}\Z",
    "Use 1 to 80 letters, digits, dots, dashes or underscores.",
)


class Room(models.Model):
    """A chat room, created by the first user who asks for it by name."""

    name = models.CharField(
        max_length=ROOM_NAME_MAX_LENGTH, unique=True, validators=[room_name_validator]
    )
    created = models.DateTimeField(auto_now_add=True)

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
