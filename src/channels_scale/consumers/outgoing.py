"""A per-connection outgoing queue bounded in bytes: a client that does not read is closed.

Why. The ASGI server's ``send`` waits while the socket's write buffer is full (uvicorn: above
the transport's high-water mark). A consumer that awaits it directly stops reading the channel
layer while its client stalls, so the layer drops messages for it (silently, unless its overflow
notice is configured), and nothing closes the client until the server's ping timeout (1011, 20 s
or more). Here every message the consumer sends goes through this queue; one writer task per
connection awaits the server's ``send``. Handlers and the layer task never wait for the client:
they append and go on. When the bytes waiting pass ``limit`` the queue refuses the message and
the consumer closes with 1013 (:attr:`~channels_scale.closecodes.CloseCode.TRY_AGAIN_LATER`):
the queue is dropped, the close frame gets 2 s to reach the server, and the consumer ends (its
groups and presence released). The socket is closed by the server once its buffer drains: ASGI
gives an application no way to abort a transport (docs/close-codes.md).

Size of a message: characters of a text frame (its UTF-8 size is at least that; counting
characters costs nothing per message), bytes of a binary frame, 0 for control messages.

Order: messages are sent in the order they were put, ``accept`` and ``close`` included. An
error from the server's ``send`` (the client is gone) stops the writer; later messages are
dropped (the consumer receives ``websocket.disconnect`` from the server anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from channels_scale.consumers.direct import preframed

logger = logging.getLogger("channels_scale.consumers")

__all__ = ["DEFAULT_MAX_OUTGOING_BYTES", "OutgoingQueue", "SlowClient"]

#: Default bound of a connection's outgoing queue (``settings.WEBSOCKET_MAX_OUTGOING_BYTES``).
DEFAULT_MAX_OUTGOING_BYTES = 1 << 20

Message = dict[str, Any]


class SlowClient(Exception):
    """The client did not read: its outgoing queue passed its bound (the consumer closes 1013)."""


def message_size(message: Message) -> int:
    """The queued size of an ASGI send message (see the module docstring)."""
    text = message.get("text")
    if text is not None:
        return len(text)
    data = message.get("bytes")
    return len(data) if data is not None else 0


class OutgoingQueue:
    """Messages waiting for the ASGI ``send``, at most ``limit`` bytes, a writer task while any.

    :meth:`send` has the ASGI ``send`` signature, so it replaces it in the consumer. With
    ``write_now`` (the server's pre-framed write, :mod:`channels_scale.consumers.direct`), a
    frame sent while nothing is queued is written at once, without the writer task, if the
    server can take it (it declines while the transport is paused, before the handshake, after a
    close). The writer task exists only while messages wait, and the deque only while it is
    needed: an idle connection holds neither.
    """

    __slots__ = ("_queue", "_send", "_task", "failed", "limit", "queued", "write_now")

    def __init__(
        self,
        send: Callable[[Message], Awaitable[None]],
        limit: int,
        write_now: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._send = send
        self.limit = limit
        self.write_now = write_now
        self._queue: deque[tuple[Message, int]] | None = None
        self.queued = 0  # bytes in the queue
        self._task: asyncio.Task[None] | None = None
        self.failed = False  # the server's send raised: the client is gone

    @property
    def pending(self) -> bool:
        """Whether anything is queued (then a frame written around the queue would overtake
        it) or the writer failed."""
        return self._queue is not None or self.failed

    async def send(self, message: Message) -> None:
        """Queue ``message`` (or write it at once, see the class docstring).

        Raises:
            SlowClient: the bytes waiting would pass ``limit`` (the message is not queued).
        """
        if self.failed:
            return
        queue = self._queue
        if queue is None:
            write_now = self.write_now
            if write_now is not None and message.get("type") == "websocket.send":
                frame = preframed(message)
                if frame is not None and write_now(frame):
                    return
            queue = self._queue = deque()
        size = message_size(message)
        if size and self.queued + size > self.limit and queue:
            raise SlowClient(f"{self.queued + size} bytes waiting for the client")
        queue.append((message, size))
        self.queued += size
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        # Runs while the queue has messages; a message put meanwhile is seen by the loop (no
        # await between the last check and the end), else the next send starts a new writer.
        queue = self._queue
        send = self._send
        try:
            while queue:
                message, size = queue[0]
                if isinstance(message, asyncio.Future):  # a flush() marker
                    if not message.done():
                        message.set_result(None)
                else:
                    await send(message)
                queue.popleft()
                self.queued -= size
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.debug("websocket send failed; dropping the outgoing queue", exc_info=True)
            self._fail()
        if self._queue is queue:
            self._queue = None
            self._task = None

    def _fail(self) -> None:
        self.failed = True
        for message, _ in self._queue or ():
            if isinstance(message, asyncio.Future) and not message.done():
                message.set_result(None)
        self._queue = None
        self.queued = 0

    async def flush(self, within: float) -> bool:
        """Wait until everything queued so far was given to the server; False after ``within`` s."""
        queue = self._queue
        if queue is None or self.failed:
            return True
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append((marker, 0))  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(asyncio.shield(marker), within)
        except TimeoutError:
            return False
        return True

    async def abort(self) -> None:
        """Drop what is queued and stop the writer (the client is closed another way)."""
        self._fail()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
