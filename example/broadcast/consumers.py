"""The broadcast endpoint every bench and scaling check uses: ``/ws/broadcast/<room>/``.

Every text frame a client sends is delivered verbatim to every connection in that room, the sender
included. Frames over ``WEBSOCKET_MAX_MESSAGE_BYTES`` close the connection with 1009.
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from channels_scale.closecodes import CloseCode


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


def broadcast_consumer() -> type[AsyncWebsocketConsumer]:
    """The consumer class the route serves (one place to switch implementations)."""
    return BroadcastConsumer
