"""A chat app shaped like the Channels tutorial, for ``bench --url --path --frame`` tests.

Served by uvicorn (``uvicorn tests.bench.tutorial_app:application``). It is what a user's own
endpoint looks like, not ours: ``/ws/chat/<room>/`` behind Channels' own
``AllowedHostsOriginValidator`` (a handshake without an allowed ``Origin`` gets HTTP 403), a
``channels.generic.websocket.AsyncWebsocketConsumer`` that takes ``{"message": ...}`` and
``group_send``s it, and sends every member ``{"message": ..., "room": ...}`` re-serialised by
``json.dumps`` (so a bench frame never comes back byte for byte). One process, Channels'
in-memory layer.
"""

from __future__ import annotations

import json
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    INSTALLED_APPS=["channels"],
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    DATABASES={},
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402


class ChatConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"chat_{self.room}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = json.loads(text_data or "{}")["message"]
        await self.channel_layer.group_send(
            self.group, {"type": "chat.message", "message": message}
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"message": event["message"], "room": self.room}))


application = ProtocolTypeRouter(
    {
        "websocket": AllowedHostsOriginValidator(
            URLRouter([re_path(r"^ws/chat/(?P<room>[\w-]+)/$", ChatConsumer.as_asgi())])
        )
    }
)
