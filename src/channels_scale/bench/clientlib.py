"""Websocket client libraries the load generator can drive, behind one small interface.

Two implementations: ``picows`` (Cython, callback per frame, no task per connection) and
``websockets`` (pure Python asyncio, one reader task per connection). ``channels-scale bench
clientlib`` measures what each costs the load generator per 1,000 frames received against the
ceiling server; the cheaper one is :data:`DEFAULT_LIBRARY`. Neither offers compression, so every
stack is measured on plain frames.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

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
) -> ClientConnection:
    """Open a websocket to ``url`` with ``library``, from ``local_addr`` when given, sending
    ``headers`` (``Origin``, ``Cookie``, ...) with the handshake.

    Raises:
        OSError, asyncio.TimeoutError, or the library's handshake error: the connection failed.
        ValueError: unknown library.
    """
    if library == "picows":
        return await _PicowsConnection.open(
            url, on_text, on_close, local_addr, open_timeout, headers
        )
    if library == "websockets":
        return await _WebsocketsConnection.open(
            url, on_text, on_close, local_addr, open_timeout, headers
        )
    raise ValueError(f"unknown client library {library!r}; choose from {', '.join(LIBRARIES)}")


class _PicowsConnection:
    def __init__(self, transport: WSTransport) -> None:
        self._transport = transport

    @classmethod
    async def open(
        cls,
        url: str,
        on_text: OnText,
        on_close: OnClose,
        local_addr: tuple[str, int] | None,
        open_timeout: float,
        headers: Sequence[tuple[str, str]],
    ) -> _PicowsConnection:
        from picows import WSFrame, WSListener, WSMsgType, ws_connect

        class Listener(WSListener):
            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                kind = frame.msg_type
                if kind == WSMsgType.TEXT:
                    on_text(frame.get_payload_as_bytes())
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
        return cls(transport)

    async def send(self, data: bytes) -> None:
        from picows import WSMsgType

        self._transport.send(WSMsgType.TEXT, data)

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
    def __init__(self, ws: ClientConnectionWs, reader: asyncio.Task[None]) -> None:
        self._ws = ws
        self._reader = reader

    @classmethod
    async def open(
        cls,
        url: str,
        on_text: OnText,
        on_close: OnClose,
        local_addr: tuple[str, int] | None,
        open_timeout: float,
        headers: Sequence[tuple[str, str]],
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
                    if isinstance(message, bytes):
                        on_text(message)
            except ConnectionClosed:
                pass
            finally:
                on_close()

        return cls(ws, asyncio.create_task(read()))

    async def send(self, data: bytes) -> None:
        await self._ws.send(data, text=True)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), 3.0)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
