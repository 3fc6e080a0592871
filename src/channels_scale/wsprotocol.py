"""uvicorn's websocket protocol with bounds on what one client can make a worker parse.

Run uvicorn with ``--ws channels_scale.wsprotocol:BoundedWebSocketProtocol`` (``channels-scale up``
and every file in ``deploy/`` do). It is uvicorn's ``websockets-sansio`` implementation with two
bounds that neither uvicorn nor websockets offers as an option:

- **Fragments per message.** ``--ws-max-size`` bounds the *bytes* of a message, so a client
  sending a text frame with FIN=0 and then empty continuation frames never reaches it: each empty
  fragment still costs the worker a parse and a list slot, without end. Past
  :attr:`~BoundedWebSocketProtocol.max_fragments` fragments in one message the connection is
  closed with **1009** (message too big), reason ``"too many fragments"``.
- **Control frames.** Every ping is answered with a pong, so a ping flood costs a parse and a
  write per frame. Pings and pongs draw from a token bucket
  (:attr:`~BoundedWebSocketProtocol.control_burst` frames, refilled at
  :attr:`~BoundedWebSocketProtocol.control_per_second`); past it the connection is closed with
  **1008** (policy violation), reason ``"too many control frames"``. Clients that ping every few
  seconds (websockets' default: 20 s) never come near it.

And one answer without noise: a text message that is not UTF-8 closes with **1007** as in uvicorn,
but uvicorn logs each one with a traceback (``logger.exception``), so a client could fill the
worker's log at will; here it is checked first, closed the same way, and counted (reason
``"invalid UTF-8"``), with nothing logged.

And one addition for the consumers' direct path (:mod:`channels_scale.consumers.direct`): the
ASGI scope of an accepted connection carries the extension :data:`PREFRAMED` whose ``"write"``
takes a websocket frame already serialized (the same bytes for every connection of a broadcast)
and writes it to the transport at once, when nothing can be ahead of it (see
:meth:`BoundedWebSocketProtocol.write_preframed`). A connection that negotiated
permessage-deflate does not get the extension: its frames must go through its own compressor, so
its consumer keeps the normal path.

Pre-framed writes are coalesced per connection within one event-loop turn: a connection's first
frame of a turn is written at once, and any further frames the same turn gives it are held and
written together, with one ``transport.write``, when the turn ends (:class:`_Coalescer`: one
``call_soon`` per loop and turn, not per frame). Why: a worker that falls behind gets several
messages per Redis read (or several client frames per read), and one send per frame and
connection then costs the worker, the load balancer and the client one syscall and one wakeup
per frame; held and joined, the cost per delivery *falls* as the rate rises, as with Node's
streams (writes made while one is in flight go out together). Writing the first frame at once
keeps the cost of the common case, one frame per turn, what it was. Measured with a bare
uvicorn server writing to 500 connections, server CPU per delivery, coalescing off / on
(alternated in one process, 3 rounds each): 13.1 / 13.3 µs at 1 frame per connection and turn,
12.7 / 10.1 µs at 3, 13.5 / 5.8 µs at 6. Order: any other write of the connection (the
application's ``send``: accept, frames, close; a shutdown) writes what is held first; frames held
for a connection that closed or was lost before the turn ended are dropped, as they would have
been in the transport's buffer.
And less kept per connection (an idle connection is what a worker holds most of): the parsed
handshake request and response are released once the connection is open, and uvicorn's
``asyncio.Queue`` and ``asyncio.Event`` are replaced by stand-ins that allocate nothing while
idle, and header names are shared between connections (:mod:`channels_scale.wsmemory`).

Each close is the websockets way of *failing* the connection (RFC 6455 7.1.7): the close frame
is written, the TCP connection closed, and the rest of what the client sent is discarded unparsed.
Both are counted per process in :data:`channels_scale.asgi.refusals`, which ``/healthz`` reports.

Measured (one worker, 20 canary clients, 5 s of flood from one client that reconnects whenever it
is closed; ``python -m tests.security.flood``): empty continuation frames cost the worker 8.2
CPU-seconds and the canaries a p50 delay of 4.9 s with ``websockets-sansio`` (the connection is
never closed), and 2.1 CPU-seconds with a canary p99 of 11 ms with this class (1,325 connections,
each closed with 1009: ~1.6 ms of worker CPU each, against ~0.9 ms for a polite connect and close).
A ping flood: 4.0 CPU-seconds and canary p50 3.4 s before, 2.5 CPU-seconds and p99 77 ms after.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.protocol import State

from channels_scale.asgi import refusals
from channels_scale.closecodes import CloseCode
from channels_scale.consumers.direct import PREFRAMED
from channels_scale.wsmemory import ReceiveQueue, Writable, shared_headers

TOO_MANY_FRAGMENTS = "too many fragments"
TOO_MANY_CONTROL_FRAMES = "too many control frames"
INVALID_UTF8 = "invalid UTF-8"


class _Coalescer:
    """One event loop's turns, and the connections holding frames until the turn ends."""

    __slots__ = ("armed", "connections", "loop", "turn")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # weakly: a coalescer is the value of a WeakKeyDictionary keyed by its loop, and a
        # strong reference would keep both alive forever (one per loop a process ever ran)
        self.loop = weakref.ref(loop)
        self.turn = 0
        self.armed = False  # next_turn is scheduled
        self.connections: list[BoundedWebSocketProtocol] = []

    def next_turn(self) -> None:
        """The turn that wrote ended: the frames it held go out, one write per connection."""
        self.turn += 1
        self.armed = False
        connections, self.connections = self.connections, []
        for connection in connections:
            connection.flush_preframed()


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Coalescer] = (
    weakref.WeakKeyDictionary()
)
# The last loop's coalescer: a process has one loop, so the lookup above is rarely needed (it
# costs about a microsecond, next to ~10 for a whole delivery).
_last: _Coalescer | None = None


def _coalescer(loop: asyncio.AbstractEventLoop) -> _Coalescer:
    global _last
    found = _coalescers.get(loop)
    if found is None:
        found = _coalescers[loop] = _Coalescer(loop)
    _last = found
    return found


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """``websockets-sansio`` with a bound on fragments per message and on control frames."""

    #: Frames one message may span (its first frame included). A 64 KiB message in 128 fragments
    #: is 512 bytes each; clients in practice (browsers, websockets) send one frame per message.
    max_fragments = 128
    #: Bytes handed to the frame parser at a time (see :meth:`data_received`).
    feed_bytes = 1024
    #: Pings and pongs a client may send at once, then at this rate.
    control_burst = 32.0
    control_per_second = 2.0
    #: Frames write_preframed held this loop turn, not yet written (see _Coalescer): one frame
    #: as is, several as a list; a class default, so an idle connection holds nothing.
    preframed: bytes | list[bytes] | None = None
    #: The loop turn of this connection's last immediate pre-framed write.
    written_turn = -1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fragments = 0
        self.control_tokens = self.control_burst
        self.control_refilled_at = self.loop.time()
        # Lighter stand-ins for uvicorn's per-connection asyncio.Queue and Event (~4.5 KiB per
        # idle connection), with the methods uvicorn calls on them.
        self.receive_queue: ReceiveQueue[Any] = ReceiveQueue()
        self.queue = self.receive_queue  # type: ignore[assignment]
        self.writable = Writable()  # type: ignore[assignment]

    async def receive(self) -> Any:  # uvicorn's ASGIReceiveEvent (in its private _types)
        # uvicorn's, awaiting the queue's future directly: one coroutine frame fewer per idle
        # connection.
        queue = self.receive_queue
        while queue.empty():
            await queue.wait()
        message = queue.get_nowait()
        if self.read_paused and queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The parsed request stays alive for the connection's life (uvicorn's ``request`` and a
        # local of websockets' parser generator) but is not read again: the scope has copies of
        # its headers. Emptied, it frees ~3.8 KiB per idle connection (docs/per-delivery.md).
        event.headers.clear()
        if self.response.status_code != 101:
            return  # refused by websockets: uvicorn made no scope and closes the connection
        # The application task is created but has not run yet: the scope can still change.
        # Header names and the common values of a few headers as one bytes object each for all
        # connections, instead of one per connection (~0.8 KiB per idle connection).
        self.scope["headers"] = shared_headers(self.scope["headers"])
        # No extension with a compressor (the shared bytes would be uncompressed frames).
        if not self.conn.extensions:
            self.scope["extensions"][PREFRAMED] = {"write": self.write_preframed}

    def start_keepalive(self) -> None:
        # uvicorn calls this once the accept response is written; the response (its headers,
        # ~1.7 KiB) is not read again, but uvicorn would keep it for the connection's life.
        super().start_keepalive()
        del self.response

    def preframed_writable(self) -> bool:
        """Whether a pre-framed frame may be written now (see :meth:`write_preframed`)."""
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.conn.state is State.OPEN
            and self.writable.is_set()
            and not self.transport.is_closing()
        )

    def write_preframed(self, frame: bytes) -> bool:
        """Write one serialized server frame (this loop turn); False (nothing written) when it
        may not be.

        It may when the handshake is complete, the connection open (no close sent or received),
        and the transport not paused: uvicorn writes everything its ``send`` produces at once, so
        nothing of this connection is waiting in the protocol. What the application still holds
        (its own queue) is the caller's to check. A paused transport answers False so that the
        caller's bounded queue, not the transport's buffer, absorbs a slow client.

        The connection's first frame of a loop turn is written at once; further frames of the
        same turn are held and written together when the turn ends (see the module docstring),
        or before any other write of the connection, whichever comes first.
        """
        if not self.preframed_writable():
            return False
        coalescer = _last
        if coalescer is None or coalescer.loop() is not self.loop:
            coalescer = _coalescer(self.loop)
        if not coalescer.armed:  # the end of this turn is where held frames go out
            coalescer.armed = True
            self.loop.call_soon(coalescer.next_turn)
        if self.written_turn != coalescer.turn and self.preframed is None:
            # The turn's first frame for this connection (the common case): written now.
            self.written_turn = coalescer.turn
            self.transport.write(frame)
            return True
        pending = self.preframed
        if pending is None:
            self.preframed = frame
            coalescer.connections.append(self)
        elif isinstance(pending, bytes):
            self.preframed = [pending, frame]
        else:
            pending.append(frame)
        return True

    def flush_preframed(self) -> None:
        """Write the frames ``write_preframed`` held, in one write; drop them when the
        connection closed or was lost since (a close frame must be the last one written)."""
        frames = self.preframed
        if frames is None:
            return
        self.preframed = None
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.transport.write(frames if isinstance(frames, bytes) else b"".join(frames))

    async def send(self, message: Any) -> None:
        # Pending pre-framed frames were accepted before this message: they go first.
        if self.preframed is not None:
            self.flush_preframed()
        await super().send(message)

    def shutdown(self) -> None:
        self.flush_preframed()
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        # websockets parses all of ``data`` before uvicorn sees the first frame: one read of
        # empty fragments (up to 256 KiB, ~40k frames) would be parsed whole before the bound
        # applies. Fed in slices, a failed connection stops within one slice (~170 empty
        # frames); 4 KiB slices cost a flood connection 4.9 ms of CPU instead of 1.6 ms.
        if len(data) <= self.feed_bytes:
            super().data_received(data)
            return
        for start in range(0, len(data), self.feed_bytes):
            if self.transport.is_closing():
                return
            super().data_received(data[start : start + self.feed_bytes])

    def handle_text(self, event: Frame) -> None:
        self.fragments = 1
        super().handle_text(event)

    def handle_bytes(self, event: Frame) -> None:
        self.fragments = 1
        super().handle_bytes(event)

    def handle_cont(self, event: Frame) -> None:
        if self.close_sent:
            # Failed (or closing): what is left of this batch is discarded, not buffered.
            return
        self.fragments += 1
        if self.fragments > self.max_fragments:
            self.fail(CloseCode.MESSAGE_TOO_BIG, TOO_MANY_FRAGMENTS)
            return
        super().handle_cont(event)

    def send_receive_event_to_app(self) -> None:
        # A whole message is here. uvicorn decodes text and, failing, logs a traceback per
        # message before closing with 1007; decode it first and fail quietly instead (decoding
        # twice costs ~1 µs per KiB, next to ~1 ms per message in the application).
        if self.curr_msg_data_type == "text" and not self.close_sent:
            frames = self.frames
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                self.frames = []
                self.fail(CloseCode.INVALID_DATA, INVALID_UTF8)
                return
        super().send_receive_event_to_app()

    def handle_ping(self) -> None:
        if self.control_frame_allowed():
            super().handle_ping()

    def handle_pong(self, event: Frame) -> None:
        if self.control_frame_allowed():
            super().handle_pong(event)

    def control_frame_allowed(self) -> bool:
        """Take a token for one ping or pong; without one, fail the connection (1008)."""
        if self.close_sent:
            return False
        now = self.loop.time()
        self.control_tokens = min(
            self.control_burst,
            self.control_tokens + (now - self.control_refilled_at) * self.control_per_second,
        )
        self.control_refilled_at = now
        if self.control_tokens < 1:
            self.fail(CloseCode.POLICY_VIOLATION, TOO_MANY_CONTROL_FRAMES)
            return False
        self.control_tokens -= 1
        return True

    def fail(self, code: int, reason: str) -> None:
        """Close with ``code`` now, tell the app (``websocket.disconnect``), stop parsing."""
        refusals[reason] += 1
        self.conn.fail(code, reason)
        # uvicorn's own path for a protocol error: queue the disconnect, write the close frame,
        # close the transport.
        self.handle_parser_exception()
