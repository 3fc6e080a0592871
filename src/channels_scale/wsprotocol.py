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

    def write_preframed(self, frame: bytes) -> bool:
        """Write one serialized server frame now; False (nothing written) when it may not be.

        It may when the handshake is complete, the connection open (no close sent or received),
        and the transport not paused: uvicorn writes everything its ``send`` produces at once, so
        nothing of this connection is waiting in the protocol. What the application still holds
        (its own queue) is the caller's to check. A paused transport answers False so that the
        caller's bounded queue, not the transport's buffer, absorbs a slow client.
        """
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.conn.state is not State.OPEN
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        return True

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
