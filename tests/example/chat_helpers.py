"""Helpers for the chat tests: scaled timeouts and a websocket client of the whole ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
