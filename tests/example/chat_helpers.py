"""Helpers for the chat tests: scaled timeouts and a websocket client of the whole ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from channels.testing import WebsocketCommunicator

from channels_scale.net import timeout_factor


def wait(seconds: float = 2.0) -> float:
    """A timeout for one await, scaled by ``CHANNELS_SCALE_TIMEOUT_FACTOR``."""
    return seconds * timeout_factor()


@asynccontextmanager
async def websocket(
    path: str, cookie: bytes | None = None, origin: bytes | None = None
) -> AsyncIterator[WebsocketCommunicator]:
    """A websocket client of the whole ASGI application (origin check, auth, router, consumer).

    The caller connects; the client is disconnected and the application awaited on exit.
    """
    from config.asgi import application

    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", cookie))
    if origin is not None:
        headers.append((b"origin", origin))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    try:
        yield communicator
    finally:
        await communicator.disconnect(timeout=wait())


CONTROL_TYPES = frozenset({"welcome", "presence", "presence.state"})


async def receive_frame(communicator: WebsocketCommunicator) -> dict[str, Any]:
    """The next frame that is not a control frame (welcome, presence); a stream message is
    returned as its ``data`` with ``_offset`` added."""
    while True:
        frame: dict[str, Any] = await communicator.receive_json_from(timeout=wait())
        if frame.get("type") in CONTROL_TYPES:
            continue
        if "data" in frame:
            return {**frame["data"], "_offset": frame.get("offset")}
        return frame


async def nothing_but_control(communicator: WebsocketCommunicator, seconds: float = 0.3) -> bool:
    """True when only control frames (or nothing) arrive within ``seconds``."""
    while not await communicator.receive_nothing(timeout=wait(seconds)):
        frame = await communicator.receive_json_from(timeout=wait())
        if frame.get("type") not in CONTROL_TYPES:
            return False
    return True
