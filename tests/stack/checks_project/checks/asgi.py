"""HTTP through Django; ``/ws/room/<name>/``: a StreamConsumer (history, resume) per room."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "checks.settings")
django_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from channels_scale.history.consumer import StreamConsumer  # noqa: E402


class RoomConsumer(StreamConsumer):
    """Follows ``room.<name>``: what is published there reaches every client, resumable."""

    async def connect(self) -> None:
        await self.join_stream("room." + self.scope["url_route"]["kwargs"]["name"])


application = ProtocolTypeRouter(
    {
        "http": django_app,
        "websocket": URLRouter([re_path(r"^ws/room/(?P<name>\w+)/$", RoomConsumer.as_asgi())]),
    }
)
