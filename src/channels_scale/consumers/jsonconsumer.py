"""The JSON consumer: Channels' ``AsyncJsonWebsocketConsumer`` on our fast path, with bounded JSON.

Guarantees and limits are those of :mod:`channels_scale.consumers.websocket`; JSON frames are
decoded with :func:`channels_scale.consumers.limits.loads_bounded`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from channels.generic import websocket as channels_websocket

from channels_scale.consumers.frames import FRAME_TYPE, frame_event
from channels_scale.consumers.limits import ProtocolViolation, loads_bounded
from channels_scale.consumers.websocket import AsyncWebsocketConsumer

__all__ = ["AsyncJsonWebsocketConsumer"]


class AsyncJsonWebsocketConsumer(
    AsyncWebsocketConsumer,
    channels_websocket.AsyncJsonWebsocketConsumer,  # type: ignore[misc]
):
    """Channels' ``AsyncJsonWebsocketConsumer`` on :class:`AsyncWebsocketConsumer`'s fast path.

    Same API: ``receive_json``, ``send_json(content, close=)``, and the async classmethod hooks
    ``encode_json``/``decode_json`` (override them to change the codec). Differs from Channels:

    - a binary frame, or a text frame ``decode_json`` rejects with ``ValueError`` (malformed
      JSON, nested deeper than :attr:`max_json_depth`, a lone surrogate), closes the connection
      with 1008 (:attr:`CloseCode.POLICY_VIOLATION`) instead of raising (which in Channels
      kills the consumer and the server closes with 1011);
    - :meth:`group_send_json` encodes a broadcast once for the whole group.
    """

    #: deepest nesting of arrays/objects a frame may have (deeper: close 1008)
    max_json_depth: ClassVar[int] = 32

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Decode a text frame and call ``receive_json``; close 1008 on a malformed frame."""
        if text_data is None:
            raise ProtocolViolation("text frames only")
        try:
            content = await self.decode_json(text_data)
        except ProtocolViolation:
            raise
        except (ValueError, RecursionError):
            raise ProtocolViolation("invalid JSON") from None
        await self.receive_json(content, **kwargs)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """``json.loads`` with a depth bound and no lone surrogates (ProtocolViolation)."""
        return loads_bounded(text_data, cls.max_json_depth)

    async def send_json(self, content: Any, close: Any = False) -> None:
        """Encode ``content`` with ``encode_json`` and send it as a text frame."""
        await self.send(text_data=await self.encode_json(content), close=close)

    async def group_send_json(self, group: str, content: Any, type: str = FRAME_TYPE) -> str:
        """Send ``content`` to every member of ``group``, encoded once with ``encode_json``.

        Members handle it with :meth:`client_frame` (or a handler of your ``type`` that sends
        ``event["text"]``); nobody decodes or re-encodes it. Returns the encoded text.
        """
        text: str = await self.encode_json(content)
        await self.channel_layer.group_send(group, frame_event(text, type))
        return text
