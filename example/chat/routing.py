from django.urls import re_path

from chat.consumers import ChatConsumer
from chat.models import ROOM_NAME_PATTERN

websocket_urlpatterns = [
    re_path(rf"^ws/chat/(?P<room>{ROOM_NAME_PATTERN})/$", ChatConsumer.as_asgi()),
]
