"""The chat's websocket endpoint: ``/ws/chat/<room>/``.

Every logged-in connection follows the channel-layer group ``chat.<room>`` as a
:class:`~channels_scale.history.consumer.StreamConsumer`: a message a client sends is stored
through the ORM, then published to the room's stream, so every connection in the room receives it
(the sender included) whichever worker process it is on, wrapped with its position as
``{"epoch", "offset", "data": <message frame>}``. A client that reconnects with its last
``epoch``/``offset`` gets what it missed first (or ``reload`` when the room's history cannot
cover it), and the room's presence (who is online) comes with join/leave events. See
:mod:`chat.protocol` for the message frames and ``client.js`` for the browser side.

Authentication: the session cookie of a logged-in browser, or ``?token=`` issued for the audience
``chat`` (:mod:`channels_scale.auth`; ``channels-scale token --user demo --audience chat``).
Authorization: a room has members (:mod:`chat.models`); the first user to open a room that does
not exist creates it and becomes its first member.

Limits and close codes (:class:`channels_scale.closecodes.CloseCode`, docs/close-codes.md):

- no logged-in user and no valid token: the handshake is accepted, then closed with ``4401``
  (``UNAUTHORIZED``), so a browser sees the reason instead of a bare failed handshake;
- not a member of an existing room: accepted, then closed with ``4403`` (``FORBIDDEN``); a member
  whose membership was removed while connected gets ``{"type": "error", "code": "forbidden"}``
  for each message (nothing stored);
- a frame over ``settings.WEBSOCKET_MAX_MESSAGE_BYTES`` (UTF-8 bytes; default 65536): close
  ``1009`` (``MESSAGE_TOO_BIG``);
- a binary frame, invalid JSON, JSON nested deeper than 32 levels or holding a lone surrogate
  (``"\ud800"``), or JSON that is not ``{"type": "message", "text": <string>}``: close ``1008``
  (``POLICY_VIOLATION``);
- more than :attr:`ChatConsumer.message_rate` messages per second on one connection (bursts of
  :attr:`ChatConsumer.message_burst`), or :attr:`ChatConsumer.user_message_limit` per minute per
  user across workers, or more than :attr:`ChatConsumer.max_connections_per_user` connections of
  one user across workers: close ``4429`` (``RATE_LIMITED``);
- no frame for :attr:`ChatConsumer.idle_timeout` seconds (``client.js`` pings every 20 s): close
  ``4408`` (``IDLE_TIMEOUT``);
- a client that does not read: close ``1013`` past ``WEBSOCKET_MAX_OUTGOING_BYTES`` queued;
- anything else that fails in the consumer: close ``1011``, logged; the connection leaves the
  room and its presence either way;
- ``{"type": "ping"}`` in any JSON spelling is answered with ``{"type": "pong"}``;
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
from channels_scale.consumers import COUNTERS, ProtocolViolation
from channels_scale.exceptions import LayerUnavailable
from channels_scale.history.consumer import PONG_FRAME, StreamConsumer
from chat.models import Message, is_member, join_or_create
from chat.protocol import (
    MAX_TEXT_CHARS,
    MalformedFrame,
    MessageFrame,
    forbidden,
    message_text,
    not_delivered,
    text_too_long,
)

GROUP_PREFIX = "chat."
PING = {"type": "ping"}


def room_group(room: str) -> str:
    """The channel-layer group of a room (room names are valid group-name characters)."""
    return GROUP_PREFIX + room


@database_sync_to_async
def room_id_for(name: str, user_id: int) -> int | None:
    """The id of the room called ``name`` if the user may join it (created if new), else None."""
    room, _ = join_or_create(name, user_id)
    return None if room is None else room.pk


member_of = database_sync_to_async(is_member)


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
    room: str
    room_id: int
    user_id: int
    username: str

    # Limits (docs/close-codes.md): a person types far below these; a script does not.
    message_rate = 5.0
    message_burst = 20
    user_message_limit = 120  # per user_message_window (60 s), across every worker
    max_connections_per_user = 20
    idle_timeout = 60.0  # client.js pings every 20 s

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            COUNTERS["unauthorized"] += 1
            await self.accept()
            await self.close(int(CloseCode.UNAUTHORIZED), "login required")
            return
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.user_id = user.pk
        self.username = user.get_username()
        room_id = await room_id_for(self.room, self.user_id)
        if room_id is None:
            await self.forbid(room_group(self.room))
            return
        self.room_id = room_id
        self.group = room_group(self.room)
        await self.join_stream(self.group)

    async def authorize(self, action: str, group: str) -> bool:
        """Members of the room may join it and post in it (checked in the database each time)."""
        return group == room_group(self.room) and bool(await member_of(self.room, self.user_id))

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if self.group is None:
            return  # not logged in: already closed, ignore frames still in flight
        # The base classes answer pings, close 1009 over the size limit and 1008 on a binary
        # frame or invalid JSON, then call receive_json.
        await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content == PING:  # the base class answers '{"type":"ping"}' spelled exactly so
            await self.send(text_data=PONG_FRAME)
            return
        try:
            text = message_text(content)
        except MalformedFrame as exc:
            raise ProtocolViolation(str(exc)) from None
        if not text:
            return
        if len(text) > MAX_TEXT_CHARS:
            await self.send_json(text_too_long())
            return
        if self.group is None or not await self.authorize("publish", self.group):
            await self.send_json(forbidden())
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
