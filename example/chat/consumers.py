"""The chat's websocket endpoint: ``/ws/chat/<room>/``.

Every logged-in connection follows the channel-layer group ``chat.<room>`` as a
:class:`~channels_scale.history.consumer.StreamConsumer`: a message a client sends is stored
through the ORM, then published to the room's stream, so every connection in the room receives it
(the sender included) whichever worker process it is on, wrapped with its position as
``{"epoch", "offset", "data": <message frame>}``. A client that reconnects with its last
``epoch``/``offset`` gets what it missed first (or ``reload`` when the room's history cannot
cover it), and the room's presence (who is online) comes with join/leave events. See
:mod:`chat.protocol` for the message frames and ``client.js`` for the browser side.

Limits and close codes (:class:`channels_scale.closecodes.CloseCode`):

- no logged-in user: the handshake is accepted, then closed with ``4401`` (``UNAUTHORIZED``), so a
  browser sees the reason instead of a bare failed handshake;
- a frame over ``settings.WEBSOCKET_MAX_MESSAGE_BYTES`` (UTF-8 bytes; default 65536): close
  ``1009`` (``MESSAGE_TOO_BIG``);
- a binary frame, invalid JSON, or JSON that is not ``{"type": "message", "text": <string>}``:
  close ``1008`` (``POLICY_VIOLATION``);
- a text that is empty once stripped of whitespace: ignored;
- a text over :data:`chat.protocol.MAX_TEXT_CHARS` (2000) characters: an ``{"type": "error"}``
  frame back to the sender, nothing stored, the connection stays open;
- Redis unreachable for the layer's ``send_timeout`` when publishing: the message is stored, the
  sender gets ``{"type": "error", "code": "not_delivered"}``, the connection stays open.

Delivery: a message is published only after it is stored. A client that was disconnected gets it
when it resumes (the room keeps 1,000 messages for a day, see ``CHANNEL_LAYERS`` in the settings).
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async

from channels_scale.closecodes import CloseCode
from channels_scale.exceptions import LayerUnavailable
from channels_scale.history.consumer import StreamConsumer
from chat.models import Message, Room
from chat.protocol import (
    MAX_TEXT_CHARS,
    MalformedFrame,
    MessageFrame,
    message_text,
    not_delivered,
    text_too_long,
)

GROUP_PREFIX = "chat."


def room_group(room: str) -> str:
    """The channel-layer group of a room (room names are valid group-name characters)."""
    return GROUP_PREFIX + room


@database_sync_to_async
def room_id_for(name: str) -> int:
    """The id of the room called ``name``, created if it does not exist yet."""
    room, _ = Room.objects.get_or_create(name=name)
    return room.pk


@database_sync_to_async
def store_message(room_id: int, user_id: int, username: str, text: str) -> MessageFrame:
    """Store a message and return it as the frame every client in the room receives."""
    message = Message.objects.create(room_id=room_id, user_id=user_id, text=text)
    return message_frame(message, username)


def message_frame(message: Message, username: str) -> MessageFrame:
    """A stored message as a client frame (the room page renders the same fields)."""
    return {
        "type": "message",
        "id": message.pk,
        "user": username,
        "text": message.text,
        "created": message.created.isoformat(),
    }


class ChatConsumer(StreamConsumer):
    """One chat connection (see the module docstring for the protocol and its limits)."""

    group: str | None = None
    room_id: int
    user_id: int
    username: str

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(int(CloseCode.UNAUTHORIZED), "login required")
            return
        room = self.scope["url_route"]["kwargs"]["room"]
        self.user_id = user.pk
        self.username = user.get_username()
        self.room_id = await room_id_for(room)
        self.group = room_group(room)
        await self.join_stream(self.group)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if self.group is None:
            return  # not logged in: already closed, ignore frames still in flight
        # The base classes answer pings, close 1009 over the size limit and 1008 on a binary
        # frame or invalid JSON, then call receive_json.
        await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            text = message_text(content)
        except MalformedFrame as exc:
            await self.close(int(CloseCode.POLICY_VIOLATION), str(exc))
            return
        if not text:
            return
        if len(text) > MAX_TEXT_CHARS:
            await self.send_json(text_too_long())
            return
        frame = await store_message(self.room_id, self.user_id, self.username, text)
        try:
            await self.publish(frame)
        except LayerUnavailable:
            # Redis stayed unreachable for the layer's send_timeout: the message is stored (the
            # source of truth), so say so and keep the connection.
            await self.send_json(not_delivered(frame["id"]))

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        # Compact separators: every byte is sent once per member of the room.
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False)
