"""Websocket client libraries the load generator can drive, behind one small interface.

Two implementations: ``picows`` (Cython, callback per frame, no task per connection) and
``websockets`` (pure Python asyncio, one reader task per connection). ``channels-scale bench
clientlib`` measures what each costs the load generator per 1,000 frames received against the
ceiling server; the cheaper one is :data:`DEFAULT_LIBRARY`. Neither offers compression, so every
stack is measured on plain frames.

Both apply the stack's wire (:mod:`channels_scale.bench.wire`) the same way: a connection on the
``socketio`` wire completes Socket.IO's handshake before :func:`connect` returns, answers the
server's pings, and hands ``on_text`` (and takes from ``send``) bench frames, unwrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from channels_scale.bench.wire import DEFAULT_WIRE, Session, wire_named

if TYPE_CHECKING:
    from picows import WSTransport
    from websockets.asyncio.client import ClientConnection as ClientConnectionWs

OnText = Callable[[bytes], None]
"""Called with the payload of every text frame received (bytes, not decoded)."""

OnClose = Callable[[], None]
"""Called once when the connection is gone (closed by either side, or broken)."""

LIBRARIES = ("picows", "websockets")
DEFAULT_LIBRARY = "picows"


class ClientConnection(Protocol):
    """One open client websocket."""

    async def send(self, data: bytes) -> None:
        """Queue ``data`` (UTF-8 JSON) as one text frame; returns without waiting for the peer."""

    async def close(self) -> None:
        """Close the websocket (close handshake, bounded in time) and the TCP connection."""


async def connect(
    library: str,
    url: str,
    on_text: OnText,
    on_close: OnClose,
    *,
    local_addr: tuple[str, int] | None = None,
    open_timeout: float = 10.0,
    headers: Sequence[tuple[str, str]] = (),
    wire: str = DEFAULT_WIRE,
) -> ClientConnection:
    """Open a websocket to ``url`` with ``library``, from ``local_addr`` when given, sending
    ``headers`` (``Origin``, ``Cookie``, ...) with the handshake, speaking ``wire``.

    Raises:
        OSError, asyncio.TimeoutError, or the library's handshake error: the connection failed.
        ConnectionError: the wire's own handshake did not complete within ``open_timeout``.
        ValueError: unknown library or wire.
    """
    framing = _Framing.of(wire, on_text)
    if library == "picows":
        conn: _PicowsConnection | _WebsocketsConnection = await _PicowsConnection.open(
            url, on_text, on_close, local_addr, open_timeout, headers, framing
        )
    elif library == "websockets":
        conn = await _WebsocketsConnection.open(
            url, on_text, on_close, local_addr, open_timeout, headers, framing
        )
    else:
        raise ValueError(f"unknown client library {library!r}; choose from {', '.join(LIBRARIES)}")
    if framing is not None:
        try:
            await asyncio.wait_for(framing.ready, open_timeout)
        except TimeoutError:
            await conn.close()
            raise ConnectionError(f"no {wire} handshake within {open_timeout:g} s") from None
        except BaseException:
            await conn.close()
            raise
    return conn


class _Framing:
    """A wire session applied to one connection: unwraps what arrives, wraps what leaves."""

    __slots__ = ("_on_text", "_ready", "session")

    def __init__(self, session: Session, on_text: OnText) -> None:
        self.session = session
        self._on_text = on_text
        self._ready = asyncio.get_running_loop().create_future()

    @classmethod
    def of(cls, wire: str, on_text: OnText) -> _Framing | None:
        """The framing of ``wire`` (None: frames go as they are, nothing to apply)."""
        session = wire_named(wire).session()
        return None if session is None else cls(session, on_text)

    def received(self, data: bytes) -> bytes | None:
        """Apply one received text frame; returns the reply to send now, if any."""
        frame, reply = self.session.receive(data)
        if frame is not None:
            self._on_text(frame)
        elif not self._ready.done() and self.session.ready:
            self._ready.set_result(None)
        return reply

    @property
    def ready(self) -> asyncio.Future[None]:
        """Done once the wire's own handshake is (frames may be sent from then on)."""
        return self._ready


class _PicowsConnection:
    def __init__(self, transport: WSTransport, framing: _Framing | None) -> None:
        self._transport = transport
        self._framing = framing

    @classmethod
    async def open(
        cls,
        url: str,
        on_text: OnText,
        on_close: OnClose,
        local_addr: tuple[str, int] | None,
        open_timeout: float,
        headers: Sequence[tuple[str, str]],
        framing: _Framing | None,
    ) -> _PicowsConnection:
        from picows import WSFrame, WSListener, WSMsgType, ws_connect

        class Listener(WSListener):
            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                kind = frame.msg_type
                if kind == WSMsgType.TEXT:
                    if framing is None:
                        on_text(frame.get_payload_as_bytes())
                    elif (reply := framing.received(frame.get_payload_as_bytes())) is not None:
                        transport.send(WSMsgType.TEXT, reply)
                elif kind == WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()

            def on_ws_disconnected(self, transport: WSTransport) -> None:
                on_close()

        kwargs: dict[str, Any] = {}
        if local_addr is not None:
            kwargs["local_addr"] = local_addr
        if headers:
            kwargs["extra_headers"] = list(headers)
        transport, _ = await asyncio.wait_for(
            ws_connect(Listener, url, websocket_handshake_timeout=open_timeout, **kwargs),
            open_timeout,
        )
        return cls(transport, framing)

    async def send(self, data: bytes) -> None:
        from picows import WSMsgType

        framing = self._framing
        self._transport.send(
            WSMsgType.TEXT, data if framing is None else framing.session.wrap(data)
        )

    async def close(self) -> None:
        from picows import WSCloseCode

        transport = self._transport
        if transport.is_disconnected:
            return
        with contextlib.suppress(Exception):
            transport.send_close(WSCloseCode.OK)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.wait_disconnected(), 2.0)
        transport.disconnect()


class _WebsocketsConnection:
    def __init__(
        self, ws: ClientConnectionWs, reader: asyncio.Task[None], framing: _Framing | None
    ) -> None:
        self._ws = ws
        self._reader = reader
        self._framing = framing

    @classmethod
    async def open(
        cls,
        url: str,
        on_text: OnText,
        on_close: OnClose,
        local_addr: tuple[str, int] | None,
        open_timeout: float,
        headers: Sequence[tuple[str, str]],
        framing: _Framing | None,
    ) -> _WebsocketsConnection:
        from websockets.asyncio.client import connect as ws_connect
        from websockets.exceptions import ConnectionClosed

        kwargs: dict[str, Any] = {}
        if local_addr is not None:
            kwargs["local_addr"] = local_addr
        ws = await ws_connect(
            url,
            compression=None,
            proxy=None,
            open_timeout=open_timeout,
            max_queue=None,
            user_agent_header=None,
            additional_headers=list(headers) or None,
            **kwargs,
        )

        async def read() -> None:
            try:
                while True:
                    message = await ws.recv(decode=False)
                    if not isinstance(message, bytes):
                        continue
                    if framing is None:
                        on_text(message)
                    elif (reply := framing.received(message)) is not None:
                        await ws.send(reply, text=True)
            except ConnectionClosed:
                pass
            finally:
                on_close()

        return cls(ws, asyncio.create_task(read()), framing)

    async def send(self, data: bytes) -> None:
        framing = self._framing
        await self._ws.send(data if framing is None else framing.session.wrap(data), text=True)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), 3.0)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
