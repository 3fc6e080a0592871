"""The broadcast endpoint every bench and scaling check uses: ``/ws/broadcast/<room>/``.

Every text frame a client sends is delivered verbatim to every connection in that room, the sender
included. Frames over ``WEBSOCKET_MAX_MESSAGE_BYTES`` close the connection with 1009. When Redis
stays unreachable for the layer's ``send_timeout``, the sender gets :data:`NOT_DELIVERED` (an
error frame; the room may not have received that frame) and the connection stays open.

Two implementations of the same endpoint, chosen by ``CHANNELS_SCALE_CONSUMER``:

- ``ours`` (default): :class:`FastBroadcastConsumer`, on ``channels_scale.consumers``;
- ``channels``: :class:`BroadcastConsumer`, on Channels' own base class (the recipe as written;
  the bench's ``recipe`` and ``pubsub`` stacks use it).
"""

from __future__ import annotations

import os
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from channels_scale import consumers
from channels_scale.closecodes import CloseCode
from channels_scale.exceptions import LayerUnavailable

CONSUMER_ENV = "CHANNELS_SCALE_CONSUMER"
#: Sent back to a sender whose frame could not be published (Redis down for ``send_timeout``).
NOT_DELIVERED = (
    '{"type":"error","code":"not_delivered",'
    '"detail":"Redis unreachable: the room may not have received this frame; send it again later."}'
)


class BroadcastConsumer(AsyncWebsocketConsumer):
    """The recipe's consumer, written the way Channels' tutorial writes it."""

    async def connect(self) -> None:
        self.room_group = "broadcast." + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.room_group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.room_group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return
        if len(text_data) > settings.WEBSOCKET_MAX_MESSAGE_BYTES:
            await self.close(CloseCode.MESSAGE_TOO_BIG)
            return
        await self.channel_layer.group_send(
            self.room_group, {"type": "broadcast.message", "text": text_data}
        )

    async def broadcast_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


class FastBroadcastConsumer(consumers.AsyncWebsocketConsumer):
    """The same endpoint on our base class: the frame travels as a ``client.frame`` event.

    The size limit (1009) is the base class's; the client's text is sent on unchanged, so each
    member's handler is the base class's ``client_frame`` (no decode, no re-encode).
    """

    async def connect(self) -> None:
        self.room_group = "broadcast." + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.room_group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.room_group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return
        try:
            await self.channel_layer.group_send(self.room_group, consumers.frame_event(text_data))
        except LayerUnavailable:
            # A Redis outage must not end the consumer (the exception would close it with 1011
            # and log a traceback): tell the sender and keep the connection.
            await self.send(text_data=NOT_DELIVERED)


def broadcast_consumer() -> type[AsyncWebsocketConsumer]:
    """The consumer class the route serves: ``CHANNELS_SCALE_CONSUMER`` = ``ours`` or ``channels``.

    Raises:
        ValueError: another value.
    """
    choice = os.environ.get(CONSUMER_ENV, "ours")
    if choice == "ours":
        return FastBroadcastConsumer
    if choice == "channels":
        return BroadcastConsumer
    raise ValueError(f"{CONSUMER_ENV} must be 'ours' or 'channels', not {choice!r}")
