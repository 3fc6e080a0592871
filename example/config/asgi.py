"""ASGI entry point: Django for HTTP, Channels' URL router for websockets, behind an origin check.

Websocket routes:

- ``/ws/broadcast/<room>/``: every text frame is delivered verbatim to every connection in the room.
- ``/ws/chat/<room>/``: the chat (logged-in users only).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

import broadcast.routing  # noqa: E402
import chat.routing  # noqa: E402
from channels_scale.asgi import OriginCheck  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginCheck(
            AuthMiddlewareStack(
                URLRouter(
                    broadcast.routing.websocket_urlpatterns + chat.routing.websocket_urlpatterns
                )
            )
        ),
    }
)
