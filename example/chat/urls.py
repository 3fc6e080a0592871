from django.contrib.auth.views import LogoutView
from django.urls import path, re_path

from chat import views
from chat.models import ROOM_NAME_PATTERN
from chat.throttle import ThrottledLoginView

app_name = "chat"

urlpatterns = [
    path("", views.rooms, name="rooms"),
    re_path(rf"^rooms/(?P<name>{ROOM_NAME_PATTERN})/$", views.room, name="room"),
    re_path(
        rf"^rooms/(?P<name>{ROOM_NAME_PATTERN})/messages\.json$",
        views.room_messages,
        name="room-messages",
    ),
    path(
        "login/",
        ThrottledLoginView.as_view(
            template_name="chat/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", LogoutView.as_view(), name="logout"),
]
