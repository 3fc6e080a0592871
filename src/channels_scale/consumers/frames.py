"""Pre-encoded group frames: encode a broadcast once, not once per member.

Channels' usual JSON broadcast puts the *object* in the group message and every member's handler
calls ``send_json`` on it, so a room of N members runs the JSON encoder N times per message (and
the in-memory layer deep-copies the object N times). A *frame event* carries the text of the
websocket frame instead, encoded once by the sender::

    {"type": "client.frame", "text": "<the frame, already encoded>"}
    {"type": "client.frame", "bytes": b"<a binary frame>"}

Our consumers handle ``client.frame`` (method ``client_frame``) by sending that text as is, with
no decode and no re-encode. Any other handler may do the same with ``await
self.send(text_data=event["text"])``. Members receive the same ``str`` object (strings are
immutable, so sharing it is safe, whatever the layer does).

From a consumer use :meth:`AsyncJsonWebsocketConsumer.group_send_json`; from anywhere else (a
view, a background job, with ``async_to_sync``) use :func:`group_send_json`. The event needs a
consumer that handles its ``type``: Channels' own consumers do not know ``client.frame``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

__all__ = ["FRAME_TYPE", "FrameEvent", "frame_event", "group_send_json"]

#: The message ``type`` of a pre-encoded frame (handler method ``client_frame``).
FRAME_TYPE = "client.frame"


class FrameEvent(TypedDict):
    """A channel-layer message carrying a ready websocket frame (``text`` or ``bytes``)."""

    type: str
    text: NotRequired[str]
    bytes: NotRequired[bytes]


def frame_event(text: str, type: str = FRAME_TYPE) -> FrameEvent:
    """The group message that makes each member send ``text`` verbatim."""
    return {"type": type, "text": text}


async def group_send_json(
    channel_layer: Any,
    group: str,
    content: Any,
    *,
    type: str = FRAME_TYPE,
    encode: Callable[[Any], str] = json.dumps,
) -> str:
    """Encode ``content`` once and send it to ``group`` as a :data:`FRAME_TYPE` event.

    Delivery and ordering are the layer's (``group_send``). Returns the encoded text.
    """
    text = encode(content)
    await channel_layer.group_send(group, frame_event(text, type))
    return text
