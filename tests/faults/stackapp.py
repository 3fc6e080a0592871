"""ASGI app of the fault suite's stack: the example app plus ``/ws/stream/<room>/``.

``/ws/stream/<room>/`` is a :class:`~channels_scale.history.consumer.StreamConsumer` on group
``fault.<room>`` (history on, see :mod:`tests.faults.stacksettings`) for anonymous clients: every
JSON frame a client sends is published to the room's stream and every member gets it with its
``(epoch, offset)``; a client reconnects with ``?epoch=&offset=`` and resumes (docs/recovery.md).
Redis unreachable for ``send_timeout`` when publishing: the sender gets ``{"type": "error",
"code": "not_delivered"}`` and stays connected, as the chat does. Everything else is the example
(``/ws/broadcast/<room>/`` included), behind the same origin check.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.faults.stacksettings")

from channels.routing import URLRouter
from django.urls import re_path

from channels_scale.asgi import OriginCheck
from channels_scale.exceptions import LayerUnavailable
from channels_scale.history.consumer import StreamConsumer
from config.asgi import application as example_application

STREAM_PREFIX = "/ws/stream/"
NOT_DELIVERED = {"type": "error", "code": "not_delivered"}


class FaultStreamConsumer(StreamConsumer):
    """One stream client: publish what it sends, deliver the room's stream with positions."""

    async def connect(self) -> None:
        await self.join_stream("fault." + self.scope["url_route"]["kwargs"]["room"])

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            await self.publish(content)
        except LayerUnavailable:
            await self.send_json(NOT_DELIVERED)


stream_routes = OriginCheck(
    URLRouter(
        [re_path(r"^ws/stream/(?P<room>[A-Za-z0-9_.-]{1,80})/$", FaultStreamConsumer.as_asgi())]
    )
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/ws/stream/`` websockets to :class:`FaultStreamConsumer`, the rest to the example."""
    if scope["type"] == "websocket" and scope["path"].startswith(STREAM_PREFIX):
        await stream_routes(scope, receive, send)
    else:
        await example_application(scope, receive, send)
