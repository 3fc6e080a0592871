"""ASGI middleware that every worker of the stack wraps around the user's application.

:class:`WorkerMiddleware` answers ``GET /healthz`` itself (the user's app is not called), naming the
worker, counting its open websockets, the handshakes refused at the doors (``refused``) and how
often each consumer limit answered (``limits``: docs/close-codes.md); nginx, HAProxy,
``channels-scale up`` and ``channels-scale status`` use it. It also answers ``GET /readyz`` (the
worker's channel layer answers a send + receive round trip and the worker is not draining) and,
for ``channels-scale restart``, ``POST /drainz`` with the run directory's control token.

:class:`OriginCheck` refuses websocket handshakes for a ``Host`` outside ``ALLOWED_HOSTS`` (HTTP
400, as Django answers over HTTP) and from a foreign browser origin (HTTP 403); clients that send
no ``Origin`` header (bench clients, mobile apps, servers) pass the origin check.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asgiref.sync import markcoroutinefunction
from django.http.request import split_domain_port, validate_host

from channels_scale.closecodes import CloseCode
from channels_scale.settings import WORKER_ID_ENV, describe_hosts

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
DRAIN_PATH = "/drainz"
#: a file holding the token ``POST /drainz`` must carry (``X-Channels-Scale-Token``)
CONTROL_TOKEN_FILE_ENV = "CHANNELS_SCALE_CONTROL_TOKEN_FILE"
#: how long ``/readyz`` waits for the layer's round trip (seconds)
READY_TIMEOUT_S = 2.0
#: Django setting: origins (or ``ALLOWED_HOSTS``-style host patterns) whose pages may connect.
ALLOWED_ORIGINS_SETTING = "CHANNELS_SCALE_ALLOWED_ORIGINS"
#: Called once, in order, when a worker starts draining, before ``POST /drainz`` answers: the
#: ``--lb direct`` worker (stack/reuseport.py) closes its share of the public port here.
DRAIN_HOOKS: list[Callable[[], object]] = []


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
        self.draining = False
        # The server's `send` of each open websocket, to close it with 1012 when draining.
        self._websockets: dict[int, Send] = {}
        self._ready_channel: str | None = None
        self._ready_lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"] in (HEALTH_PATH, READY_PATH, DRAIN_PATH):
            if scope["path"] == HEALTH_PATH:
                await self._health(send)
            elif scope["path"] == READY_PATH:
                await self._ready(send)
            else:
                await self._drain(scope, send)
            return
        if kind != "websocket":
            await self.app(scope, receive, send)
            return
        self.open_websockets += 1
        key = id(send)
        self._websockets[key] = send
        try:
            await self.app(scope, receive, send)
        finally:
            self.open_websockets -= 1
            self._websockets.pop(key, None)

    async def _health(self, send: Send) -> None:
        from channels_scale.consumers.limits import COUNTERS  # pure: no Django import

        await _json_response(
            send,
            200,
            {
                "worker": self.worker_id,
                "pid": os.getpid(),
                "websockets": self.open_websockets,
                "refused": dict(refusals),
                "limits": dict(COUNTERS),
            },
        )

    async def _ready(self, send: Send) -> None:
        """200 when the channel layer answers a round trip and the worker is not draining."""
        answer: dict[str, Any] = {"worker": self.worker_id, "pid": os.getpid()}
        reason = "draining" if self.draining else None
        if reason is None:
            async with self._ready_lock:
                reason = await self._layer_problem(answer)
        answer["ready"] = reason is None
        if reason is not None:
            answer["reason"] = reason
        await _json_response(send, 200 if reason is None else 503, answer)

    async def _layer_problem(self, answer: dict[str, Any]) -> str | None:
        """Why the worker's default channel layer does not answer (None: it does, or none)."""
        try:
            from channels.layers import get_channel_layer
            from django.conf import settings

            if not settings.configured:
                answer["layer"] = None
                return None
            layer = get_channel_layer()
            config = dict(getattr(settings, "CHANNEL_LAYERS", {}).get("default") or {})
        except ImportError:
            answer["layer"] = None
            return None
        except Exception as exc:
            return f"channel layer cannot be built: {type(exc).__name__}: {exc}"
        if layer is None:
            answer["layer"] = None
            return None
        answer["layer"] = {"backend": config.get("BACKEND"), "hosts": describe_hosts(config)}
        nonce = uuid.uuid4().hex
        started = time.monotonic()
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                # A process-specific channel may be served without Redis (our layer delivers to
                # its own process locally): ping every Redis of the layer too.
                await ping_redis_hosts(config)
                if self._ready_channel is None:
                    self._ready_channel = await layer.new_channel("readyz.")
                await layer.send(self._ready_channel, {"type": "readyz.ping", "nonce": nonce})
                # An answer of an earlier check that timed out may still be queued: skip it.
                while (await layer.receive(self._ready_channel)).get("nonce") != nonce:
                    pass
        except TimeoutError:
            return f"channel layer did not answer within {READY_TIMEOUT_S:.0f} s"
        except Exception as exc:
            return f"channel layer failed: {type(exc).__name__}: {exc}"
        answer["round_trip_ms"] = round((time.monotonic() - started) * 1000, 2)
        return None

    async def _drain(self, scope: Scope, send: Send) -> None:
        """``POST /drainz?close=K``: mark the worker draining, close up to K websockets (1012)."""
        token = _control_token()
        given = _header(scope, b"x-channels-scale-token") or ""
        if scope["method"] != "POST" or token is None or not hmac.compare_digest(given, token):
            await _json_response(send, 403, {"error": "POST with the run directory's token"})
            return
        if not self.draining:
            self.draining = True
            for hook in DRAIN_HOOKS:
                hook()
        query = dict(
            part.partition("=")[::2] for part in scope["query_string"].decode().split("&") if part
        )
        count = int(query["close"]) if query.get("close", "").isdigit() else 0
        closed = 0
        for ws_send in list(self._websockets.values())[:count]:
            try:
                await ws_send({"type": "websocket.close", "code": CloseCode.SERVICE_RESTART})
                closed += 1
            except Exception:
                continue
        await _json_response(
            send, 200, {"draining": True, "closed": closed, "websockets": self.open_websockets}
        )


async def ping_redis_hosts(config: dict[str, Any]) -> None:
    """Reach every Redis named in a ``CHANNEL_LAYERS`` entry's ``hosts`` (URLs, ``(host, port)``
    pairs, or dicts with ``address`` or ``host``/``port``, as channels_redis accepts) as the
    layer does (:mod:`channels_scale.layer.reach`: every shard, every cluster seed with
    ``cluster_state:ok``, the master Sentinel names); raises ``ConnectionError`` naming the
    host that does not answer. Hosts our layer cannot read (channels_redis' Sentinel dicts) are
    not pinged."""
    from channels_scale.exceptions import ConfigError
    from channels_scale.layer.config import decode_hosts
    from channels_scale.layer.reach import reach_all

    try:
        hosts = decode_hosts((config.get("CONFIG") or {}).get("hosts"))
    except ConfigError:
        return
    await reach_all(hosts, READY_TIMEOUT_S)


def _control_token() -> str | None:
    path = os.environ.get(CONTROL_TOKEN_FILE_ENV)
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


async def _json_response(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
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

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not ``async def``: it returns the awaitable of the application (or of the refusal), so
        # no frame of this check stays alive for the connection's life (~270 B per idle
        # connection, docs/per-delivery.md). Marked below as a coroutine function, since ASGI
        # servers and routers tell ASGI 3 from ASGI 2 that way.
        if scope["type"] != "websocket":
            return self.app(scope, receive, send)
        host = _header(scope, b"host")
        if not host_allowed(host, self.allowed_hosts):
            return _refuse(scope, receive, send, 400, "host", b"Bad Request: Host not allowed\n")
        if not origin_allowed(_header(scope, b"origin"), host, self.allowed_origins):
            return _refuse(scope, receive, send, 403, "origin", b"Forbidden: Origin not allowed\n")
        return self.app(scope, receive, send)

    markcoroutinefunction(__call__)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, reason: str, body: bytes
) -> None:
    """Answer the handshake with ``status`` (or a close before accept: 403) and count it."""
    refusals[reason] += 1
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
