"""A websocket client that sends whatever bytes it is told to: frames a real client never would.

The ``websockets`` client refuses to send malformed frames, so the hostile-input tests build frames
by hand (RFC 6455 section 5.2) and read the server's answer: an HTTP status for a refused
handshake, then frames, of which the first close frame gives the close code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from dataclasses import dataclass, field

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """One client frame (masked, as a client must), with any opcode, FIN and RSV bits."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def handshake(path: str, host: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in extra or []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1")


@dataclass
class Answer:
    """What the server answered: the handshake's status, then the close code (None: none seen)."""

    status: int | None = None
    close_code: int | None = None
    texts: list[bytes] = field(default_factory=list)
    #: The connection ended (reset, or closed) before a close frame arrived.
    dropped: bool = False


def _close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def parse_server_frames(buffer: bytearray, answer: Answer) -> None:
    """Consume complete (unmasked) server frames from ``buffer`` into ``answer``."""
    while len(buffer) >= 2:
        opcode, length = buffer[0] & 0xF, buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                return
            length, offset = struct.unpack("!H", buffer[2:4])[0], 4
        elif length == 127:
            if len(buffer) < 10:
                return
            length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
        if len(buffer) < offset + length:
            return
        payload = bytes(buffer[offset : offset + length])
        del buffer[: offset + length]
        if opcode == CLOSE and answer.close_code is None:
            answer.close_code = _close_code(payload)
        elif opcode == TEXT:
            answer.texts.append(payload)


class RawSocket:
    """One TCP connection that speaks the handshake and then raw frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.answer = Answer()
        self._buffer = bytearray()

    @classmethod
    async def open(
        cls,
        port: int,
        path: str,
        host: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        within: float = 10,
    ) -> RawSocket:
        """Connect and send the handshake; ``answer.status`` is the server's HTTP status."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), within)
        sock = cls(reader, writer)
        writer.write(handshake(path, host or f"127.0.0.1:{port}", headers))
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
        except (asyncio.IncompleteReadError, ConnectionError):
            return sock
        status_line = head.split(b"\r\n", 1)[0].split()
        sock.answer.status = int(status_line[1]) if len(status_line) > 1 else None
        return sock

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False when the server has closed the connection."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def read_until_closed(self, within: float, texts: int | None = None) -> Answer:
        """Read frames until a close frame or EOF (or ``within`` s, or ``texts`` text frames)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.answer.close_code is None and (texts is None or len(self.answer.texts) < texts):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            except TimeoutError:
                break
            except ConnectionError:
                self.answer.dropped = True
                break
            if not chunk:
                self.answer.dropped = True
                break
            self._buffer += chunk
            parse_server_frames(self._buffer, self.answer)
        return self.answer

    async def read_available(self) -> Answer:
        """Parse whatever the server has sent so far, without waiting."""
        while True:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), 0.001)
            except (TimeoutError, ConnectionError):
                return self.answer
            if not chunk:
                return self.answer
            self._buffer += chunk
            parse_server_frames(self._buffer, self.answer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
