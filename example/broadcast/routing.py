from django.urls import re_path

from broadcast.consumers import broadcast_consumer
from chat.models import ROOM_NAME_PATTERN

# Same room names as the chat's: group-name characters, not "." or "..".
websocket_urlpatterns = [
    re_path(rf"^ws/broadcast/(?P<room>{ROOM_NAME_PATTERN})/$", broadcast_consumer().as_asgi()),
]
