"""ASGI middleware that every worker of the stack wraps around the user's application.

:class:`WorkerMiddleware` answers ``GET /healthz`` itself (the user's app is not called), naming the
worker and counting its open websockets; nginx, HAProxy, ``channels-scale up`` and
``channels-scale status`` use it.

:class:`OriginCheck` refuses websocket handshakes for a ``Host`` outside ``ALLOWED_HOSTS`` (HTTP
400, as Django answers over HTTP) and from a foreign browser origin (HTTP 403); clients that send
no ``Origin`` header (bench clients, mobile apps, servers) pass the origin check.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlparse

from django.http.request import split_domain_port, validate_host

from channels_scale.settings import WORKER_ID_ENV

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATH = "/healthz"
#: Django setting: origins (or ``ALLOWED_HOSTS``-style host patterns) whose pages may connect.
ALLOWED_ORIGINS_SETTING = "CHANNELS_SCALE_ALLOWED_ORIGINS"


class WorkerMiddleware:
    """Answer ``/healthz`` with ``{"worker": id, "pid": pid, "websockets": open, "refused": {}}``.

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
        body = json.dumps(
            {
                "worker": self.worker_id,
                "pid": os.getpid(),
                "websockets": self.open_websockets,
                "refused": dict(refusals),
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


#: Websocket handshakes refused by :class:`OriginCheck` in this process, by reason (``host``,
#: ``origin``); ``/healthz`` reports them with the protocol's own refusals.
refusals: Counter[str] = Counter()


def host_allowed(host: str | None, allowed_hosts: Iterable[str]) -> bool:
    """Whether a handshake's ``Host`` is one Django would serve (its own ``ALLOWED_HOSTS`` check).

    A websocket handshake never reaches Django's ``HttpRequest.get_host()``, so without this a page
    on a rebinding domain (``evil.example`` resolving to the server) would be refused over HTTP
    with 400 and accepted over websockets. Same syntax as ``ALLOWED_HOSTS``; no ``Host``: refused.
    """
    if not host:
        return False
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, list(allowed_hosts))


def origin_allowed(origin: str | None, host: str | None, allowed_origins: Iterable[str]) -> bool:
    """Whether a websocket handshake with this ``Origin`` and ``Host`` may proceed.

    No ``Origin`` (not a browser) is allowed. A browser origin is allowed when it names the
    request's ``Host`` (same origin, whatever the port the load balancer listens on) or matches an
    entry of ``allowed_origins``: a full origin (``https://app.example.com``, scheme and port
    compared too) or a host pattern in ``ALLOWED_HOSTS`` syntax (``*``, ``.example.com``,
    ``[::1]``), matched as Django matches ``Host``. Anything unparsable is refused.
    """
    if origin is None:
        return True
    try:
        parsed = urlparse(origin)
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 bracket)
        return False
    netloc = parsed.netloc.lower()
    if parsed.scheme not in ("http", "https") or not netloc:
        return False
    if host is not None and netloc == host.lower():
        return True
    patterns = [pattern.lower() for pattern in allowed_origins]
    full = f"{parsed.scheme}://{netloc}"
    if any(p.rstrip("/") == full for p in patterns if "://" in p):
        return True
    domain, _port = split_domain_port(netloc)
    return bool(domain) and validate_host(domain, [p for p in patterns if "://" not in p])


class OriginCheck:
    """Refuse websocket handshakes for a foreign ``Host`` (HTTP 400) or browser origin (HTTP 403).

    The ``Host`` must pass Django's ``ALLOWED_HOSTS`` (as it must over HTTP); the ``Origin``, when
    a browser sends one, must be the page's own or in the allow-list. Both are refused before the
    application runs, counted in :data:`refusals`. On servers without the ASGI
    ``websocket.http.response`` extension (daphne) both answers are a plain 403.

    Args:
        app: the websocket application to protect.
        allowed_hosts: ``Host`` patterns; defaults to Django's ``ALLOWED_HOSTS`` (with Django's
            own fallback when it is empty and ``DEBUG`` is on).
        allowed_origins: origins whose pages may connect; defaults to the Django setting
            ``CHANNELS_SCALE_ALLOWED_ORIGINS``, else to ``ALLOWED_HOSTS``.
    """

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Iterable[str] | None = None,
        allowed_origins: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self._allowed_hosts = None if allowed_hosts is None else tuple(allowed_hosts)
        self._allowed_origins = None if allowed_origins is None else tuple(allowed_origins)

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        if self._allowed_hosts is None:
            from django.conf import settings

            hosts = list(settings.ALLOWED_HOSTS)
            if settings.DEBUG and not hosts:
                hosts = [".localhost", "127.0.0.1", "[::1]"]  # as HttpRequest.get_host()
            self._allowed_hosts = tuple(hosts)
        return self._allowed_hosts

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        if self._allowed_origins is None:
            from django.conf import settings

            origins = getattr(settings, ALLOWED_ORIGINS_SETTING, None)
            self._allowed_origins = self.allowed_hosts if origins is None else tuple(origins)
        return self._allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if not host_allowed(host, self.allowed_hosts):
            await _refuse(scope, receive, send, 400, "host", b"Bad Request: Host not allowed\n")
        elif not origin_allowed(_header(scope, b"origin"), host, self.allowed_origins):
            await _refuse(scope, receive, send, 403, "origin", b"Forbidden: Origin not allowed\n")
        else:
            await self.app(scope, receive, send)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, reason: str, body: bytes
) -> None:
    """Answer the handshake with ``status`` (or a close before accept: 403) and count it."""
    refusals[reason] += 1
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
