"""What a bench client puts on a stack's websocket around the bench frame (pure: no I/O).

Every stack but one speaks the bench frame itself: a text frame sent is the frame, a text frame
received is the frame (``websocket``). Socket.IO wraps it in its own protocol (``socketio``):
Engine.IO v4 packets over the websocket transport, Socket.IO v5 packets inside them::

    server  0{"sid":...,"pingInterval":25000,...}   Engine.IO open
    client  40                                      Socket.IO connect to the main namespace
    server  40{"sid":...}                           connected (the server's handler has run)
    server  2            client  3                  Engine.IO ping, answered with a pong
    either  42["m",<frame>]                         the event "m" carrying the bench frame

A stack names its wire (:attr:`channels_scale.bench.stacks.Target.wire`); the client library keeps
one :class:`Session` per connection and applies it to every frame (``clientlib``), so the load
generator and the delivery accounting see bench frames whatever the stack speaks.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

DEFAULT_WIRE = "websocket"

EVENT = b"m"
"""The Socket.IO event that carries bench frames (``bench/socketio/server.js`` relays it)."""

_EVENT_HEAD = b'42["' + EVENT + b'",'
_EVENT_TAIL = b"]"


class Session(Protocol):
    """One connection's protocol state."""

    @property
    def ready(self) -> bool:
        """True once the protocol's own handshake is done and frames may be sent."""

    def receive(self, data: bytes) -> tuple[bytes | None, bytes | None]:
        """``(bench frame or None, reply to send now or None)`` for one received text frame."""

    def wrap(self, frame: bytes) -> bytes:
        """The text frame that carries the bench frame ``frame``."""


class SocketIoSession:
    """A Socket.IO v4 client on the websocket transport, main namespace only.

    A received event ``42["m",<frame>]`` yields ``<frame>`` as the server serialised it (the bench
    frame is compact JSON, which ``JSON.stringify`` gives back byte for byte); any other event is
    yielded whole (a token search still finds a payload in it); pings are answered; everything
    else (the connect acknowledgement, noop packets) yields nothing.
    """

    __slots__ = ("pings", "ready", "refused")

    def __init__(self) -> None:
        self.ready = False
        self.refused: str | None = None
        self.pings = 0

    def receive(self, data: bytes) -> tuple[bytes | None, bytes | None]:
        # The event first: it is nearly every frame of a run.
        if data.startswith(_EVENT_HEAD) and data.endswith(_EVENT_TAIL):
            return data[len(_EVENT_HEAD) : -len(_EVENT_TAIL)], None
        if data == b"2":
            self.pings += 1
            return None, b"3"
        if data.startswith(b"42"):
            return data, None
        if data.startswith(b"40"):
            self.ready = True
            return None, None
        if data.startswith(b"44"):  # connect_error, e.g. refused by a middleware
            self.refused = data[2:].decode(errors="replace")[:200]
            return None, None
        if data.startswith(b"0"):  # Engine.IO open: connect to the main namespace
            return None, b"40"
        return None, None

    def wrap(self, frame: bytes) -> bytes:
        return _EVENT_HEAD + frame + _EVENT_TAIL


class Wire:
    """The plain websocket: the bench frame is the text frame both ways, no handshake of its own."""

    name = "websocket"

    def url(self, base_url: str, path: str, room: str) -> str:
        """Where a client of room ``room`` connects; ``path`` is the room's endpoint path."""
        return base_url.rstrip("/") + path

    def session(self) -> Session | None:
        """A new session for one connection (None: frames go as they are, nothing to answer)."""
        return None


class SocketIoWire(Wire):
    """Socket.IO: its own path, the room in the query (``server.js`` joins the socket to it)."""

    name = "socketio"

    def url(self, base_url: str, path: str, room: str) -> str:
        query = f"EIO=4&transport=websocket&room={quote(room, safe='')}"
        return f"{base_url.rstrip('/')}/socket.io/?{query}"

    def session(self) -> Session | None:
        return SocketIoSession()


_WIRES: dict[str, Wire] = {wire.name: wire for wire in (Wire(), SocketIoWire())}
WIRES = tuple(_WIRES)


def wire_named(name: str) -> Wire:
    """The wire called ``name``; raises ValueError naming the choices otherwise."""
    try:
        return _WIRES[name]
    except KeyError:
        raise ValueError(f"unknown wire {name!r}; choose from {', '.join(WIRES)}") from None
