"""Channels-compatible consumers with a cheap per-message path.

- :class:`AsyncWebsocketConsumer`, :class:`AsyncJsonWebsocketConsumer`: drop-in subclasses of
  Channels' classes (guarantees in :mod:`channels_scale.consumers.websocket`);
- :func:`group_send_json`, :data:`FRAME_TYPE`: broadcasts encoded once
  (:mod:`channels_scale.consumers.frames`);
- :mod:`channels_scale.consumers.guard`: failures that never leak, limits, authorization
  (close codes in :mod:`channels_scale.closecodes`), with :mod:`.limits`, :mod:`.outgoing`,
  :mod:`.userlimits`;
- :mod:`channels_scale.consumers.dbhygiene`: Django DB hygiene without a hop per message;
- ``python -m channels_scale.consumers.bench``: the no-I/O micro-benchmark in docs/consumers.md.
"""

from channels_scale.consumers.frames import FRAME_TYPE, FrameEvent, frame_event, group_send_json
from channels_scale.consumers.guard import Refused
from channels_scale.consumers.jsonconsumer import AsyncJsonWebsocketConsumer
from channels_scale.consumers.limits import COUNTERS, ProtocolViolation
from channels_scale.consumers.outgoing import SlowClient
from channels_scale.consumers.websocket import OVERFLOW_NOTICE_TYPE, AsyncWebsocketConsumer

__all__ = [
    "COUNTERS",
    "FRAME_TYPE",
    "OVERFLOW_NOTICE_TYPE",
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "FrameEvent",
    "ProtocolViolation",
    "Refused",
    "SlowClient",
    "frame_event",
    "group_send_json",
]
