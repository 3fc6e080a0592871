"""An auto-pipelining command connection: the layer's cheap path for publishes and queue pushes.

redis-py's client costs ~100 µs of CPU per call here (pool checkout and release, argument
encoding through its encoder, a read coroutine per reply, the script object's NOSCRIPT handling);
a ``PUBLISH`` itself takes Redis a couple of µs. The layer's sending commands (``PUBLISH`` to an
inbox, the ``group_send`` script, the queue-push script) therefore go through one
:class:`CommandPipe` per shard and event loop instead:

- every caller encodes its command to RESP bytes and queues them for the one shared connection,
  then waits on a future; replies come back in request order, so a FIFO of futures matches them
  (pipelining: concurrent callers never wait for each other's round trips). The requests of one
  event-loop turn leave in one write at the end of that turn: each write wakes Redis, and a
  wake-up costs the writer a context switch (``perf``: most of a ``group_send``'s CPU), so frames
  that arrive together cost Redis and the worker one wake-up, not one each;
- replies are parsed by ``hiredis`` directly in the transport's ``data_received`` callback: no
  reader task, no coroutine per reply; error replies are returned (not raised) as
  :class:`ReplyError` and the caller decides;
- the connection is the layer's own (:func:`.wire.open_connection`: TCP, TLS or unix socket,
  AUTH with ACL user and password, SELECT, CLIENT SETNAME), no redis-py object involved;
- write flow control: when the transport's buffer passes its high-water mark
  (``pause_writing``), new requests wait until it drains (``resume_writing``) instead of
  growing the buffer without bound;
- ordering: Redis executes the commands of one connection in the order written, and a sender
  awaits each call, so messages of one sender keep their order;
- failure: a lost connection fails every pending call with ``ConnectionError``; a watchdog closes
  the connection when no reply came for ``reply_timeout`` while calls are pending (a half-open TCP
  connection would otherwise hang callers). The callers' bounded retry
  (:meth:`.Shard.execute`) reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import hiredis

from channels_scale.layer.config import HostConfig
from channels_scale.layer.wire import open_connection

#: how often the watchdog looks for an overdue reply while calls are pending, seconds
WATCHDOG_INTERVAL = 0.5


class ReplyError(Exception):
    """An error reply from Redis (returned by :meth:`CommandPipe.request`, not raised)."""


def encode(*args: bytes | str | int | float) -> bytes:
    """One command in RESP (as redis-py encodes it: str as UTF-8, numbers by ``repr``)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        else:
            data = repr(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    """The command connection's protocol, after the handshake."""

    def __init__(self, pipe: CommandPipe) -> None:
        self.pipe = pipe
        self.reader = hiredis.Reader(replyError=ReplyError)

    def pause_writing(self) -> None:
        self.pipe.writable.clear()

    def resume_writing(self) -> None:
        self.pipe.writable.set()

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        waiters = self.pipe.waiters
        reader.feed(data)
        self.pipe.progress = True
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if type(reply) is hiredis.PushNotification:
                continue  # RESP3 out-of-band message: not a reply to a request
            if waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe.lost(exc)


class CommandPipe:
    """One pipelined connection to one shard (see the module docstring)."""

    def __init__(self, host: HostConfig, reply_timeout: float) -> None:
        self.host = host
        self.reply_timeout = reply_timeout
        #: cleared while the transport's write buffer is over its high-water mark
        self.writable = asyncio.Event()
        self.writable.set()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        #: requests of this event-loop turn, written together by :meth:`_flush`
        self._out: list[bytes] = []
        #: set by every reply; the watchdog clears it
        self.progress = False
        self._transport: asyncio.WriteTransport | None = None
        self._connecting: asyncio.Future[asyncio.WriteTransport] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._idle_checks = 0

    async def request(self, data: bytes) -> Any:
        """Write one encoded command and return its reply (a :class:`ReplyError` for errors).

        Raises:
            ConnectionError, OSError, TimeoutError: Redis is not reachable (retry).
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            transport = await self._connect()
        if not self.writable.is_set():  # flow control: wait for the buffer to drain
            await self.writable.wait()
            transport = self._transport or await self._connect()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        waiters = self.waiters
        if not waiters:
            self.progress = True  # the watchdog counts from the first pending request
        waiters.append(future)
        out = self._out
        out.append(data)
        if len(out) == 1:
            # Written at the end of this event-loop turn, with every request made in it: one
            # write (one wake-up of Redis) for all the frames that arrived in one turn.
            loop.call_soon(self._flush)
        if self._timer is None:
            self._arm()
        return await future

    def _flush(self) -> None:
        out = self._out
        if not out:
            return  # lost() dropped them (their callers were failed) or flushed already
        transport = self._transport
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        if transport is not None:
            transport.write(data)

    async def _connect(self) -> asyncio.WriteTransport:
        if self._closed:
            raise ConnectionError("layer closed")
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_future()
            connecting = self._connecting
            try:
                transport = await self._open()
            except BaseException as exc:
                self._connecting = None
                # The callers waiting on this attempt share it, not this caller's fate: when this
                # caller is cancelled (its own deadline, its consumer closing), they see a
                # connection error and retry under their own deadlines. A CancelledError passed
                # on would end their tasks (tests/layer/test_pipe.py: a cancelled leader).
                shared = (
                    exc
                    if isinstance(exc, Exception)
                    else ConnectionError("connecting abandoned by a cancelled caller")
                )
                connecting.set_exception(shared)
                connecting.exception()  # retrieved: other waiters may not exist
                raise
            self._connecting = None
            if self._closed:  # close() ran while connecting: this transport has no owner
                transport.abort()
                connecting.set_exception(ConnectionError("layer closed"))
                connecting.exception()
                raise ConnectionError("layer closed")
            self._transport = transport
            connecting.set_result(transport)
            return transport
        return await asyncio.shield(self._connecting)

    async def _open(self) -> asyncio.WriteTransport:
        self.writable.set()
        return await open_connection(self.host, _Protocol(self), self.reply_timeout)

    def lost(self, exc: Exception | None) -> None:
        """The connection closed: fail every pending call (callers retry)."""
        self._transport = None
        self.writable.set()  # waiters then find no transport and reconnect
        self._out.clear()  # never written: their callers fail below and retry
        error = ConnectionError(f"connection to Redis lost: {exc}" if exc else "connection closed")
        waiters, self.waiters = self.waiters, deque()
        for future in waiters:
            if not future.done():
                future.set_exception(error)

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(WATCHDOG_INTERVAL, self._check)
        self._idle_checks = 0

    def _check(self) -> None:
        self._timer = None
        if not self.waiters:
            return
        if self.progress:
            self.progress = False
            self._idle_checks = 0
        else:
            self._idle_checks += 1
            if self._idle_checks * WATCHDOG_INTERVAL >= self.reply_timeout:
                transport = self._transport
                if transport is not None:
                    transport.abort()  # connection_lost fails the waiters
                return
        self._timer = asyncio.get_running_loop().call_later(WATCHDOG_INTERVAL, self._check)

    def drop(self) -> None:
        """Abort the connection (pending calls fail, the next request reconnects)."""
        transport = self._transport
        if transport is not None:
            transport.abort()

    def close(self) -> None:
        """Close the connection; pending calls fail with ``ConnectionError``."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport, self._transport = self._transport, None
        if transport is not None:
            # abort(), not close(): a TLS transport's close() starts a close_notify exchange and
            # closes its socket only when Redis answers, which a loop closing right after this
            # never sees (the socket then leaked until garbage collection). abort() closes the
            # socket on the next loop turn; nothing is lost (every pending call fails below).
            with contextlib.suppress(OSError, RuntimeError):
                transport.abort()
        self.lost(None)
