"""The chat's pages: the room list (create or join by name) and a room (history, then live).

Rooms have members (:mod:`chat.models`): a room that exists answers 403 to anyone else (its page,
``messages.json``, and the form that opens a room by name). A room that does not exist yet shows
an empty page; the form or the websocket creates it with its creator as first member.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from channels_scale.history.consumer import stream_position
from channels_scale.history.merge import Position
from chat.consumers import message_frame, room_group
from chat.forms import RoomForm
from chat.models import Message, Room, join_or_create
from chat.protocol import MAX_TEXT_CHARS

# How many stored messages the room page shows before live ones arrive.
HISTORY_SIZE = 50


@login_required
@require_http_methods(["GET", "POST"])
def rooms(request: HttpRequest) -> HttpResponse:
    """List the rooms; POST a name to create that room (or join it if it exists)."""
    form = RoomForm(request.POST) if request.method == "POST" else RoomForm()
    status = 400 if form.is_bound else 200
    if form.is_bound and form.is_valid():
        room, _ = join_or_create(form.cleaned_data["name"], request.user.pk)
        if room is not None:
            return redirect("chat:room", name=room.name)
        form.add_error("name", "That room exists and you are not one of its members.")
        status = 403
    # Every room is listed (names are not secret); only members may open one.
    room_list = Room.objects.annotate(message_count=Count("messages")).order_by("name")
    return render(request, "chat/rooms.html", {"form": form, "rooms": room_list}, status=status)


def _forbidden(name: str, user_id: int) -> bool:
    """Whether the room exists and the user is not one of its members."""
    return (
        Room.objects.filter(name=name).exists()
        and not Room.objects.filter(name=name, members__pk=user_id).exists()
    )


def _room_state(name: str) -> tuple[Position | None, list[Message]]:
    """The room's stream position, then its last :data:`HISTORY_SIZE` messages.

    The position is read *before* the query: the client resumes from it, so a message published
    between the two reads comes again over the websocket (and the page drops it by id) instead
    of being missed.
    """
    position = async_to_sync(stream_position)(get_channel_layer(), room_group(name))
    latest = (
        Message.objects.filter(room__name=name)
        .select_related("user")
        .order_by("-created", "-id")[:HISTORY_SIZE]
    )
    return position, list(reversed(latest))


@login_required
@require_http_methods(["GET"])
def room(request: HttpRequest, name: str) -> HttpResponse:
    """A room: the last :data:`HISTORY_SIZE` stored messages, then live ones over the websocket.

    A room that does not exist yet shows an empty history; the websocket creates it on connect.
    Not a member of an existing room: 403.
    """
    if _forbidden(name, request.user.pk):
        return HttpResponseForbidden("You are not a member of this room.")
    position, history = _room_state(name)
    context = {
        "room_name": name,
        "history": history,
        "position": position,
        "max_chars": MAX_TEXT_CHARS,
        "max_bytes": settings.WEBSOCKET_MAX_MESSAGE_BYTES,
    }
    return render(request, "chat/room.html", context)


@login_required
@require_http_methods(["GET"])
def room_messages(request: HttpRequest, name: str) -> JsonResponse:
    """The room's state as JSON, for a client told to ``reload`` (its gap is beyond history).

    Not a member of an existing room: 403 with ``{"error": "forbidden"}``.
    """
    if _forbidden(name, request.user.pk):
        return JsonResponse({"error": "forbidden"}, status=403)
    position, history = _room_state(name)
    return JsonResponse(
        {
            "position": None
            if position is None
            else {"epoch": position.epoch, "offset": position.offset},
            "messages": [message_frame(m, m.user.get_username()) for m in history],
        }
    )
