"""ASGI middleware that every worker of the stack wraps around the user's application.

:class:`WorkerMiddleware` answers ``GET /healthz`` itself (the user's app is not called), naming the
worker, counting its open websockets and how often each consumer limit answered (``limits``:
docs/close-codes.md); nginx, HAProxy, ``channels-scale up`` and ``channels-scale status`` use it.

:class:`OriginCheck` refuses websocket handshakes from a foreign browser origin and lets clients
that send no ``Origin`` header (bench clients, mobile apps, servers) through.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlparse

from channels_scale.settings import WORKER_ID_ENV

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATH = "/healthz"


class WorkerMiddleware:
    """Answer ``/healthz`` with ``{"worker": id, "pid": pid, "websockets": open}``.

    ``websockets`` counts the websocket connections this process is serving: up when the
    server hands one to the app, down when that application call returns. Handshakes still in
    progress or refused count while they last. The ASGI ``send``/``receive`` are passed through
    untouched, so the middleware costs nothing per message.
    """

    def __init__(self, app: ASGIApp, worker_id: str | None = None) -> None:
        self.app = app
        self.worker_id = worker_id if worker_id is not None else os.environ.get(WORKER_ID_ENV, "0")
        self.open_websockets = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"] == HEALTH_PATH:
            await self._health(send)
            return
        if kind != "websocket":
            await self.app(scope, receive, send)
            return
        self.open_websockets += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open_websockets -= 1

    async def _health(self, send: Send) -> None:
        from channels_scale.consumers.limits import COUNTERS  # pure: no Django import

        body = json.dumps(
            {
                "worker": self.worker_id,
                "pid": os.getpid(),
                "websockets": self.open_websockets,
                "limits": dict(COUNTERS),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin1")
    return None


def origin_allowed(origin: str | None, host: str | None, allowed_hosts: Iterable[str]) -> bool:
    """Whether a websocket handshake with this ``Origin`` and ``Host`` may proceed.

    No ``Origin`` (not a browser) is allowed. A browser origin is allowed when its host equals the
    request's ``Host`` (same origin, whatever the port the load balancer listens on) or matches an
    entry of ``allowed_hosts`` (Django's ``ALLOWED_HOSTS`` syntax: ``*``, ``.example.com``).
    """
    if origin is None:
        return True
    parsed = urlparse(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    if host is not None and parsed.netloc.lower() == host.lower():
        return True
    origin_host = parsed.hostname.lower()
    for pattern in allowed_hosts:
        pattern = pattern.lower()
        if pattern == "*" or origin_host == pattern:
            return True
        if pattern.startswith(".") and (
            origin_host == pattern[1:] or origin_host.endswith(pattern)
        ):
            return True
    return False


class OriginCheck:
    """Refuse websocket handshakes from foreign browser origins (the client sees HTTP 403).

    Args:
        app: the websocket application to protect.
        allowed_hosts: extra hosts whose pages may connect; defaults to Django's ``ALLOWED_HOSTS``.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None = None) -> None:
        self.app = app
        self._allowed_hosts = None if allowed_hosts is None else tuple(allowed_hosts)

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        if self._allowed_hosts is None:
            from django.conf import settings

            self._allowed_hosts = tuple(settings.ALLOWED_HOSTS)
        return self._allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not origin_allowed(
            _header(scope, b"origin"), _header(scope, b"host"), self.allowed_hosts
        ):
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)
