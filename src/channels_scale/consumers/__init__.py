"""Channels-compatible consumers with a cheap per-message path.

- :class:`AsyncWebsocketConsumer`, :class:`AsyncJsonWebsocketConsumer`: drop-in subclasses of
  Channels' classes (guarantees in :mod:`channels_scale.consumers.websocket`);
- :func:`group_send_json`, :data:`FRAME_TYPE`: broadcasts encoded once
  (:mod:`channels_scale.consumers.frames`);
- :mod:`channels_scale.consumers.dbhygiene`: Django DB hygiene without a hop per message;
- ``python -m channels_scale.consumers.bench``: the no-I/O micro-benchmark in docs/consumers.md.
"""

from channels_scale.consumers.frames import FRAME_TYPE, FrameEvent, frame_event, group_send_json
from channels_scale.consumers.websocket import (
    OVERFLOW_NOTICE_TYPE,
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
)

__all__ = [
    "FRAME_TYPE",
    "OVERFLOW_NOTICE_TYPE",
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "FrameEvent",
    "frame_event",
    "group_send_json",
]
