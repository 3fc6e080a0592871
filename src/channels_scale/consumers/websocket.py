"""Channels-compatible websocket consumers without Channels' per-message overhead.

:class:`AsyncWebsocketConsumer` and :class:`AsyncJsonWebsocketConsumer` subclass Channels' classes
of the same names and keep their API: ``connect``/``receive``/``disconnect``, ``accept``,
``close``, ``send(..., close=)``, handlers named after the message ``type``, ``groups``,
``encode_json``/``decode_json``, ``as_asgi()``. What changes is the path of each message:

=================================  =================================  ==========================
per message                         Channels 4.3                       here
=================================  =================================  ==========================
waiting for the next message        a new task per message per         one task per source (the
                                    source + ``asyncio.wait``          layer's only while needed)
DB hygiene                          a hop to the DB thread, always     a hop only when a
                                                                       connection needs it
                                                                       (:mod:`.dbhygiene`)
handler lookup                      string replace + checks            per-class cache
``send``                            two coroutine layers               one
group JSON broadcast                encoded once per member            once per broadcast
                                                                       (:mod:`.frames`)
a frame event (``frame_types``)     task wake-up, handler, framing     framed once, written by
                                                                       the fan-out (:mod:`.direct`)
=================================  =================================  ==========================

Guarantees, the same as Channels' unless said:

- **One handler at a time.** Websocket events and channel-layer messages are read concurrently
  (the websocket in the consumer's task, the layer in one helper task), but handlers never
  overlap: a message waits for the running handler to finish. Each source's messages are
  handled in the order they arrive; waiting sources take turns (no source starves the other).
- **Stop.** A handler that raises ``StopConsumer`` (``websocket_disconnect`` does) ends the
  consumer; any other exception, whichever source the message came from, ends it *without*
  reaching the ASGI server (Channels lets it propagate): the connection is closed with a
  documented code (1008 for :class:`~channels_scale.consumers.limits.ProtocolViolation`, 1013
  for a slow client, 1011 otherwise, logged) and ``websocket_disconnect`` runs, so groups,
  presence and buffers are released (:mod:`channels_scale.consumers.guard`). A handler that
  started is never cancelled by the consumer itself; a handler is cancelled only when the
  server cancels the consumer.
- **No lost layer message.** The layer helper is cancelled only while it waits in
  ``channel_layer.receive()`` (the layer must make that cancel-safe, as Channels' in-memory
  layer and ``channels_scale.layer`` do) or while it holds a message for a consumer that has
  already stopped (the client is gone; Channels drops that message too). A message the layer
  returned to a running consumer is always handled.
- **Limits.** A frame longer than ``settings.WEBSOCKET_MAX_MESSAGE_BYTES`` (UTF-8 bytes, when the
  setting exists) is not passed to ``receive``: the consumer closes with 1009
  (:attr:`CloseCode.MESSAGE_TOO_BIG`). In the JSON consumer, a binary frame, text that is not
  JSON, JSON nested deeper than ``max_json_depth`` or holding a lone surrogate closes with 1008
  (:attr:`CloseCode.POLICY_VIOLATION`); Channels raises instead, which kills the consumer (the
  server then closes with 1011). Rates, connections per user, idle timeout and authorization:
  :mod:`channels_scale.consumers.guard`.
- **Slow clients.** Everything the consumer sends goes through a per-connection queue bounded
  in bytes (:mod:`channels_scale.consumers.outgoing`, ``WEBSOCKET_MAX_OUTGOING_BYTES``, 1 MiB
  by default): a client that does not read is closed with 1013
  (:attr:`CloseCode.TRY_AGAIN_LATER`) and no handler ever waits for it. With
  ``channels_scale.layer.RedisChannelLayer`` configured with ``"overflow_notice_type":
  "layer.overflow"``, a consumer whose layer buffer overflowed receives ``{"type":
  "layer.overflow", "dropped": n, ...}``; :meth:`AsyncWebsocketConsumer.slow_client` then
  closes with 1013 too. Override it to choose otherwise.
- **Low-level send.** ``send``/``send_json`` put the ASGI message in that queue (``base_send``)
  directly: an override of the message-level ``AsyncConsumer.send(message)`` is not called for
  data frames (``accept`` and ``close`` still go through it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any, ClassVar

from channels.consumer import get_handler_name
from channels.exceptions import InvalidChannelLayerError, StopConsumer
from channels.generic import websocket as channels_websocket
from channels.layers import get_channel_layer
from django.conf import settings

from channels_scale.closecodes import CloseCode
from channels_scale.consumers import dbhygiene
from channels_scale.consumers.direct import DirectPath
from channels_scale.consumers.frames import FRAME_TYPE
from channels_scale.consumers.guard import Guard
from channels_scale.consumers.outgoing import SlowClient

__all__ = ["OVERFLOW_NOTICE_TYPE", "AsyncWebsocketConsumer"]

Message = dict[str, Any]
Receive = Any  # the ASGI ``receive`` callable
Send = Any  # the ASGI ``send`` callable

#: The ``overflow_notice_type`` to configure on ``channels_scale.layer.RedisChannelLayer`` so that
#: buffer overflows reach :meth:`AsyncWebsocketConsumer.slow_client`.
OVERFLOW_NOTICE_TYPE = "layer.overflow"

# A bound on the per-class cache of handler names (message types come from server code, but a
# cache must not grow without limit whatever a project sends).
_HANDLER_CACHE_SIZE = 256


def _too_big(text: str, limit: int) -> bool:
    """Whether ``text`` is over ``limit`` bytes in UTF-8 (encodes only when length is unclear)."""
    length = len(text)
    if length > limit:
        return True
    if length * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


class AsyncWebsocketConsumer(Guard, DirectPath, channels_websocket.AsyncWebsocketConsumer):  # type: ignore[misc]
    """Channels' ``AsyncWebsocketConsumer``, with the per-message path made cheap.

    A drop-in base class: subclass it exactly as Channels' (see the module docstring for the
    guarantees and for what differs). Extra to Channels:

    - ``client.frame`` events (:mod:`.frames`) and the types of :attr:`frame_types` are sent as
      is, written by the layer's fan-out when they can be (:mod:`.direct`);
    - ``layer.overflow`` notices call :meth:`slow_client` (close 1013 by default);
    - frames over ``settings.WEBSOCKET_MAX_MESSAGE_BYTES`` close with 1009.
    """

    #: Types whose handler only sends ``text``/``bytes`` as one frame: the handler is skipped
    #: (:mod:`channels_scale.consumers.direct`). None if ``dispatch`` is overridden; without
    #: ``client.frame`` if ``client_frame`` is and this is not set.
    frame_types: ClassVar[frozenset[str]] = frozenset({FRAME_TYPE})

    _handler_names: ClassVar[dict[str, str]] = {}
    _direct_types: ClassVar[frozenset[str]] = frame_types  # frame_types, as they apply

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handler_names = {}
        types = frozenset(cls.frame_types)
        if cls.dispatch is not AsyncWebsocketConsumer.dispatch:
            types = frozenset()
        elif (
            "frame_types" not in vars(cls)
            and cls.client_frame is not AsyncWebsocketConsumer.client_frame
        ):
            types -= {FRAME_TYPE}
        cls._direct_types = types

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy = False  # a handler is running
        self._turn: asyncio.Future[None] | None = None  # resolved when the handler ends
        self._failure: BaseException | None = None  # why the layer task ended the consumer

    # -- the ASGI application and its loop ----------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Run the consumer for one connection (the ASGI application, as Channels').

        Whatever a handler raises ends here: the connection is closed with the code of
        :meth:`~channels_scale.consumers.guard.Guard.close_code_for` and the consumer's
        ``websocket_disconnect`` runs (groups, presence, ``disconnect``); nothing propagates to
        the server but a cancellation.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = self._open_outgoing(send)
        try:
            try:
                if self.channel_layer is None:
                    dispatch = self.dispatch
                    while True:
                        await dispatch(await self._receive_frame(receive))
                else:
                    self.channel_name = await self.channel_layer.new_channel()
                    await self._run(receive)
            except StopConsumer:
                pass
            except Exception as exc:
                await self._fail(exc)
        finally:
            await self._finish()

    @property
    def channel_receive(self) -> Any:
        """``channel_layer.receive`` bound to this consumer's channel (Channels' attribute)."""
        return functools.partial(self.channel_layer.receive, self.channel_name)

    async def _run(self, receive: Receive) -> None:
        # The websocket is read in this task, the layer in one helper task: for the consumer's
        # life, or with a sink only while messages wait (.direct). None per message (Channels'
        # await_many_dispatch creates a task per message and a waiter per round).
        main = asyncio.current_task()
        if main is None:  # pragma: no cover - __call__ always runs in a task
            raise RuntimeError("a consumer must run in an asyncio task")
        loop = asyncio.get_running_loop()
        layer_task = None if self._set_sink(main) else loop.create_task(self._read_layer(main))
        # No idle timeout: await the server's receive itself (a coroutine frame fewer per idle)
        timed = self.idle_timeout is not None
        next_frame = functools.partial(self._receive_frame, receive) if timed else receive
        try:
            while True:
                message = await next_frame()
                await self._handle_in_turn(message)
        except asyncio.CancelledError:
            failure = self._failure
            if failure is None:
                raise  # cancelled by the server
            main.uncancel()  # the layer task cancelled us to stop: raise its reason instead
            raise failure from None
        finally:
            self._unset_sink()  # first: nothing may be written past the end of the handlers
            if (layer_task := layer_task or self._layer_task) and not layer_task.done():
                layer_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await layer_task

    async def _read_layer(
        self, main: asyncio.Task[Any], take: Callable[[str], Message | None] | None = None
    ) -> None:
        """Read the layer and handle each message in turn (with ``take``, what is buffered);
        on failure, stop ``main``. A :attr:`frame_types` message arriving while no handler runs
        and no DB cleanup is due is sent here, as :meth:`dispatch` would, with less on the way.
        """
        receive = self.channel_layer.receive
        channel = self.channel_name
        direct_types = self._direct_types
        send = self.base_send
        cleanup_due = dbhygiene.cleanup_due
        try:
            while True:
                if take is not None:
                    if (message := take(channel)) is None:
                        return
                else:
                    try:
                        message = await receive(channel)
                    except asyncio.CancelledError:
                        raise
                    except BaseException:
                        # Let a running websocket handler finish first, as Channels does (it
                        # sees a failed receive only between handlers).
                        while self._busy:
                            await self._wait_turn()
                        raise
                if not self._busy and message.get("type") in direct_types and not cleanup_due():
                    self._busy = True  # the send may suspend: no handler may start meanwhile
                    try:
                        text = message.get("text")
                        if text is not None:
                            await send({"type": "websocket.send", "text": text})
                        else:
                            await send({"type": "websocket.send", "bytes": message["bytes"]})
                    finally:
                        waited = self._end_turn()
                    if waited:
                        await asyncio.sleep(0)  # take turns, as _handle_in_turn does
                    continue
                await self._handle_in_turn(message)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # StopConsumer or a handler's error: the consumer ends
            self._unset_sink()
            self._failure = exc
            main.cancel()

    async def _wait_turn(self) -> None:
        turn = self._turn
        if turn is None:
            turn = self._turn = asyncio.get_running_loop().create_future()
        try:
            await turn
        except asyncio.CancelledError:
            if self._turn is turn:
                self._turn = None
            raise

    def _end_turn(self) -> bool:
        self._busy = False
        turn = self._turn
        if turn is None:
            return False
        self._turn = None
        if not turn.done():
            turn.set_result(None)
        return True

    async def _handle_in_turn(self, message: Message) -> None:
        """Dispatch ``message`` once no other handler runs (only two tasks ever call this)."""
        while self._busy:
            await self._wait_turn()
        self._busy = True
        try:
            await self.dispatch(message)
        except BaseException:
            self._end_turn()
            raise
        if self._end_turn():
            # Someone waited: let it go first, so that neither source starves the other.
            await asyncio.sleep(0)
        if self._own_pending:
            await self._drain_own()  # the handler's own group message (.direct)

    async def dispatch(self, message: Message) -> None:
        """Call the handler named after ``message["type"]`` (``.`` → ``_``), as Channels does.

        DB hygiene: ``close_old_connections`` runs in the DB thread before and after the handler
        only when a connection needs it (:mod:`channels_scale.consumers.dbhygiene`).

        Raises:
            ValueError: the message has no or a malformed ``type``, or no handler for it.
        """
        names = self._handler_names
        try:
            name = names[message["type"]]
        except KeyError:
            name = get_handler_name(message)  # raises ValueError as Channels does
            if len(names) < _HANDLER_CACHE_SIZE:
                names[message["type"]] = name
        handler = getattr(self, name, None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        if dbhygiene.cleanup_due():
            await dbhygiene.aclose_old_connections()
        try:
            await handler(message)
        except asyncio.CancelledError:
            raise
        except BaseException:
            if dbhygiene.cleanup_due():
                await dbhygiene.aclose_old_connections()
            raise
        if dbhygiene.cleanup_due():
            await dbhygiene.aclose_old_connections()

    # -- websocket events ---------------------------------------------------------------------

    async def websocket_receive(self, message: Message) -> None:
        """A frame from the client: checked against the rate and size limits, then given to
        ``receive``."""
        if self._limited:
            await self.check_rate()
        limit: int | None = getattr(settings, "WEBSOCKET_MAX_MESSAGE_BYTES", None)
        text = message.get("text")
        if text is not None:
            if limit is not None and _too_big(text, limit):
                await self.close(int(CloseCode.MESSAGE_TOO_BIG), "message too big")
                return
            await self.receive(text_data=text)
        else:
            data = message["bytes"]
            if limit is not None and data is not None and len(data) > limit:
                await self.close(int(CloseCode.MESSAGE_TOO_BIG), "message too big")
                return
            await self.receive(bytes_data=data)

    async def websocket_disconnect(self, message: Message) -> None:
        """The client is gone: leave ``groups``, call ``disconnect``, stop the consumer."""
        self._disconnecting = True
        try:
            for group in self.groups:
                await self.channel_layer.group_discard(group, self.channel_name)
        except AttributeError as exc:
            raise InvalidChannelLayerError(
                "BACKEND is unconfigured or doesn't support groups"
            ) from exc
        await self.disconnect(message["code"])
        # DB hygiene runs in dispatch, after this handler, when a connection needs it.
        raise StopConsumer()

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: Any = False
    ) -> None:
        """Send a text or binary frame; then close when ``close`` is true (a code, or True).

        Raises:
            ValueError: neither ``text_data`` nor ``bytes_data`` was given.
        """
        if text_data is not None:
            await self.base_send({"type": "websocket.send", "text": text_data})
        elif bytes_data is not None:
            await self.base_send({"type": "websocket.send", "bytes": bytes_data})
        else:
            raise ValueError("You must pass one of bytes_data or text_data")
        if close:
            await self.close(close)

    # -- channel-layer events and hooks -------------------------------------------------------

    async def client_frame(self, event: Message) -> None:
        """Send a pre-encoded frame (``client.frame``: ``text`` or ``bytes``) as is."""
        text = event.get("text")
        if text is not None:
            await self.base_send({"type": "websocket.send", "text": text})
        else:
            await self.base_send({"type": "websocket.send", "bytes": event["bytes"]})

    async def layer_overflow(self, event: Message) -> None:
        """The layer dropped messages for us (``layer.overflow``): call :meth:`slow_client`."""
        await self.slow_client(int(event.get("dropped", 0)))

    async def slow_client(self, dropped: int) -> None:
        """Hook: the client could not keep up and ``dropped`` messages were lost for it.

        The default raises :class:`~channels_scale.consumers.outgoing.SlowClient`: the consumer
        closes with 1013 (try again later), so a client that reconnects resumes from a fresh
        state instead of silently missing messages. Override to ignore or count instead.
        """
        raise SlowClient(f"the layer dropped {dropped} messages")
