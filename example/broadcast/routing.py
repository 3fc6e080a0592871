from django.urls import re_path

from broadcast.consumers import broadcast_consumer

websocket_urlpatterns = [
    re_path(r"^ws/broadcast/(?P<room>[A-Za-z0-9_.-]{1,80})/$", broadcast_consumer().as_asgi()),
]
