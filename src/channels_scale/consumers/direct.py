"""The direct path: a broadcast framed once and written to each connection without a task switch.

Why. On the normal path a group message delivered to N connections of a worker is put into N
channel buffers; each wakes its consumer's layer task, which sends the message through the
connection's outgoing queue (waking its writer task), and uvicorn encodes one websocket frame
per connection. The task switches and the per-connection framing are most of a worker's CPU per
delivery. On the direct path the layer hands the message to the connection's *sink* while it
fans out (``RedisChannelLayer.set_sink``); the sink writes the frame bytes, serialized once for
all connections (:func:`preframed`), straight to the transport (the ASGI scope extension
:data:`PREFRAMED`, offered by our uvicorn protocol class, ``channels_scale.wsprotocol``).
No task wakes.

Which messages. Those whose ``type`` is in the consumer class's ``frame_types`` (default:
``client.frame``, see :mod:`.frames`): the class declares that its handler for them does nothing
but send ``text`` (or ``bytes``) as one frame. A class that overrides ``dispatch`` never takes
the direct path; one that overrides ``client_frame`` without setting ``frame_types`` loses
``client.frame`` from it.

When the sink declines (the message then takes the normal path, behind what is pending), so that
order, backpressure and close handling stay those of the normal path:

- a handler is running or the layer task holds a message (``_busy``), or the layer buffer holds
  a message or an overflow notice (checked by the layer before calling the sink);
- the outgoing queue holds anything (an ``accept``, a frame, a close) or its writer failed;
- the transport is paused (the client reads slowly: the bounded queue and its 1013 apply), the
  handshake is not complete, or a close was sent or received (``write_preframed``);
- Django's DB hygiene is due (``dispatch`` would hop to the DB thread first);
- the message has no ``str`` ``text`` (or ``bytes``), or its text is not encodable.

Without the extension (another ASGI server, or permessage-deflate negotiated: each connection's
compressor has its own state, so shared bytes cannot be used) or with a layer without
``set_sink`` (Channels' layers), no sink is set and everything takes the normal path.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from channels_scale.consumers import dbhygiene

if TYPE_CHECKING:
    from channels_scale.consumers.outgoing import OutgoingQueue

__all__ = ["PREFRAMED", "DirectPath", "preframed", "serialize_frame", "sink_writer"]

logger = logging.getLogger("channels_scale.consumers")

#: The ASGI scope extension a server offers for the direct path: its value is
#: ``{"write": callable(frame: bytes) -> bool}``, writing one serialized server frame now or
#: answering False (nothing written). :class:`channels_scale.wsprotocol.BoundedWebSocketProtocol`
#: offers it.
PREFRAMED = "channels_scale.preframed"

Message = dict[str, Any]

_TEXT = 0x81  # FIN + opcode 1
_BINARY = 0x82  # FIN + opcode 2

# The last message framed and its bytes, as one tuple (one atomic read and write, should two
# event loops of a process share this module). A fan-out hands every member the same dict, so
# the first member frames it and the others find it here; holding the dict keeps its id unique.
_last: tuple[Message, bytes] | None = None


def serialize_frame(first_byte: int, payload: bytes) -> bytes:
    """A server frame (RFC 6455 5.2: unmasked, one fragment, no extension) of ``payload``."""
    length = len(payload)
    if length < 126:
        return bytes((first_byte, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", first_byte, 126, length) + payload
    return struct.pack("!BBQ", first_byte, 127, length) + payload


def preframed(message: Message) -> bytes | None:
    """The serialized server frame of ``message``'s ``text`` or ``bytes``; None when it has
    neither of the right type, or its text cannot be encoded (a lone surrogate)."""
    global _last
    last = _last
    if last is not None and last[0] is message:
        return last[1]
    text = message.get("text")
    if type(text) is str:
        try:
            frame = serialize_frame(_TEXT, text.encode())
        except UnicodeEncodeError:  # the normal path fails this connection as uvicorn does
            return None
    else:
        data = message.get("bytes")
        if text is not None or type(data) is not bytes:
            return None
        frame = serialize_frame(_BINARY, data)
    _last = (message, frame)
    return frame


def sink_writer(scope: dict[str, Any]) -> Callable[[bytes], bool] | None:
    """The connection's pre-framed ``write`` from the ASGI scope, or None when not offered."""
    extensions = scope.get("extensions") or {}
    extension = extensions.get(PREFRAMED)
    if not isinstance(extension, dict):
        return None
    write = extension.get("write")
    return write if callable(write) else None


class DirectPath:
    """The consumer's side of the direct path (a mixin of ``AsyncWebsocketConsumer``).

    With a layer that has ``set_sink`` and ``receive_nowait`` (ours), the consumer's sink sees
    every message that reaches its empty buffer: it writes it (the direct path) or, declining,
    starts the layer task, which handles what is buffered and ends. So an idle consumer holds
    no layer task, no coroutine frames of a pending ``receive()`` and no future.
    """

    # set by the consumer (see channels_scale.consumers.websocket and .guard)
    _busy: bool
    _outgoing: OutgoingQueue | None
    _direct_types: ClassVar[frozenset[str]]
    scope: dict[str, Any]
    channel_layer: Any
    channel_name: str
    # set here; class defaults keep them out of the instance until used
    _write_frame: Callable[[bytes], bool] | None = None
    _main: asyncio.Task[Any] | None = None  # the consumer's task, while the sink is set
    _layer_task: asyncio.Task[None] | None = None  # the lazy layer task, while it runs
    _own_pending = False  # the sink left the running handler's own message for the main task

    if TYPE_CHECKING:

        async def _read_layer(
            self, main: asyncio.Task[Any], take: Callable[[str], Message | None] | None = None
        ) -> None: ...

        async def _handle_in_turn(self, message: Message) -> None: ...

    def _set_sink(self, main: asyncio.Task[Any]) -> bool:
        """Set the sink; True when the layer is then read lazily (no long-lived layer task)."""
        layer = self.channel_layer
        set_sink = getattr(layer, "set_sink", None)
        if set_sink is None or not hasattr(layer, "receive_nowait"):
            return False
        if not set_sink(self.channel_name, self._sink):
            return False
        self._write_frame = sink_writer(self.scope) if self._direct_types else None
        self._main = main
        return True

    def _unset_sink(self) -> None:
        if self._main is not None:
            self._main = None
            self._write_frame = None
            self.channel_layer.set_sink(self.channel_name, None)

    def _sink(self, message: Message) -> bool:
        """Write ``message`` to the client now, or decline it and see that it gets handled."""
        if not self._busy and self._write_direct(message):
            return True
        main = self._main
        if self._layer_task is None and main is not None:
            if self._busy and asyncio.current_task() is main:
                # The running handler's own group_send (a room's echo to its sender): the
                # handler runs in the main task, which takes this message when the handler
                # ends (_drain_own), without a layer task, its wake-up and a dispatch.
                self._own_pending = True
                return False
            # The message is buffered when this returns; the task runs after that.
            self._layer_task = asyncio.get_running_loop().create_task(self._drain(main))
        return False

    def _write_direct(self, message: Message) -> bool:
        """Write a :attr:`_direct_types` message as a pre-framed frame now, if allowed (no
        handler may be running: the caller checks ``_busy``)."""
        write = self._write_frame
        if (
            write is not None
            and message.get("type") in self._direct_types
            and not (self._outgoing is not None and self._outgoing.pending)
            and not dbhygiene.cleanup_due()
        ):
            frame = preframed(message)
            try:
                if frame is not None and write(frame):
                    return True
            except Exception:  # the layer's fan-out must go on; the normal path sees the error
                logger.debug("direct write failed", exc_info=True)
        return False

    async def _drain_own(self) -> None:
        """In the main task, after a handler: take what the sink left for it (``_own_pending``)
        and what queued behind, in order; each is written directly when it may be, else handled
        as the layer task would (:meth:`_handle_in_turn`). A layer task started meanwhile takes
        over (it reads the same buffer, so order holds)."""
        self._own_pending = False
        take = self.channel_layer.receive_nowait
        channel = self.channel_name
        while self._layer_task is None and (message := take(channel)) is not None:
            if not self._write_direct(message):
                await self._handle_in_turn(message)

    async def _drain(self, main: asyncio.Task[Any]) -> None:
        try:
            await self._read_layer(main, self.channel_layer.receive_nowait)
        finally:
            self._layer_task = None
