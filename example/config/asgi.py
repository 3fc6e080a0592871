"""ASGI entry point: Django for HTTP, Channels' URL router for websockets, behind an origin check.

Websocket routes (every one behind :class:`~channels_scale.asgi.OriginCheck`):

- ``/ws/broadcast/<room>/``: every text frame is delivered verbatim to every connection in the room.
  Anonymous by design, so it is routed *outside* Channels' ``AuthMiddlewareStack``: that stack
  (cookies, session, user) copies the scope three times per connection, keeps a lazy session and
  user per connection, and wraps ``send`` so that every frame sent goes through
  ``InstanceSessionWrapper.send`` (a session check per delivered message; see docs/per-delivery.md).
- ``/ws/chat/<room>/``: the chat (logged-in users only), behind ``AuthMiddlewareStack`` (the
  session of a browser) and :class:`~channels_scale.auth.TokenAuthMiddleware` (``?token=`` of
  the audience ``chat``, for other clients).

A path that matches no route (a room name with ``/``, ``!``, ``*``, 81+ characters, empty, ``.``
or ``..``) gets HTTP 404 at the handshake, with nothing logged
(:mod:`channels_scale.consumers.notfound`).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

import broadcast.routing  # noqa: E402
import chat.routing  # noqa: E402
from channels_scale.asgi import OriginCheck  # noqa: E402
from channels_scale.auth import TokenAuthMiddleware  # noqa: E402
from channels_scale.consumers.notfound import not_found_route  # noqa: E402

# The chat's routes keep their full paths: the lookahead selects them without consuming the path.
chat_routes = AuthMiddlewareStack(
    TokenAuthMiddleware(
        URLRouter([*chat.routing.websocket_urlpatterns, not_found_route]), audience="chat"
    )
)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginCheck(
            URLRouter(
                [
                    *broadcast.routing.websocket_urlpatterns,
                    re_path(r"^(?=ws/chat/)", chat_routes),
                    not_found_route,
                ]
            )
        ),
    }
)
