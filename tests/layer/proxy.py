"""A TCP proxy in front of Redis that can lose replies: for late-reply and retry tests.

``drop_reply_after(marker)``: the next request containing ``marker`` reaches Redis (and runs), but
its reply never reaches the client; the connection is then closed (``close=True``, a lost reply)
or left silent (``close=False``, a reply that never comes). Everything else passes unchanged.
Loopback only; started and stopped by the test that uses it.
"""

from __future__ import annotations

import asyncio
import contextlib


class _Link:
    def __init__(self) -> None:
        self.drop = False
        self.close = True
        self.writers: list[asyncio.StreamWriter] = []


class ReplyDroppingProxy:
    """Forwards ``127.0.0.1:<port>`` to a Redis at ``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._marker: bytes | None = None
        self._close = True
        self._tasks: set[asyncio.Task[None]] = set()
        self._links: list[_Link] = []
        #: how many replies were dropped so far
        self.dropped = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def drop_reply_after(self, marker: bytes, close: bool = True) -> None:
        """Lose the reply to the next request that contains ``marker``."""
        self._marker = marker
        self._close = close

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        link = _Link()
        link.writers = [writer, up_writer]
        self._links.append(link)
        for coro in (self._upstream(link, reader, up_writer), self._downstream(link, up_reader)):
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _upstream(
        self, link: _Link, reader: asyncio.StreamReader, up: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    link.drop, link.close = True, self._close
                up.write(data)
                await up.drain()
        self._shut(link)

    async def _downstream(self, link: _Link, up_reader: asyncio.StreamReader) -> None:
        client = link.writers[0]
        with contextlib.suppress(OSError):
            while data := await up_reader.read(65536):
                if link.drop:
                    self.dropped += 1
                    if link.close:
                        break
                    continue  # silent from now on
                client.write(data)
                await client.drain()
        self._shut(link)

    @staticmethod
    def _shut(link: _Link) -> None:
        for writer in link.writers:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            self._shut(link)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
