"""The worker middleware and the origin check, as pure ASGI (no server)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.compatibility import guarantee_single_callable

from channels_scale.asgi import (
    OriginCheck,
    WorkerMiddleware,
    host_allowed,
    origin_allowed,
    refusals,
)


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        (None, "127.0.0.1:8000", [], True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", [], True),
        ("http://evil.example", "127.0.0.1:8000", ["localhost", "127.0.0.1"], False),
        ("http://localhost:9999", "127.0.0.1:8000", ["localhost"], True),
        ("https://chat.example.com", "x", [".example.com"], True),
        ("https://example.com", "x", [".example.com"], True),
        ("https://badexample.com", "x", [".example.com"], False),
        ("null", "127.0.0.1:8000", ["*"], False),
        ("http://anything.test", "h", ["*"], True),
        ("https://app.example.com", "x", ["https://app.example.com"], True),
        ("http://app.example.com", "x", ["https://app.example.com"], False),
        ("https://app.example.com:8443", "x", ["https://app.example.com"], False),
        ("https://app.example.com:8443", "x", ["https://app.example.com:8443/"], True),
        ("http://[::1]:8000", "127.0.0.1:8000", ["[::1]"], True),
        ("http://[::1", "127.0.0.1:8000", ["*"], False),
        ("http://user@localhost", "127.0.0.1:8000", ["localhost"], False),
    ],
)
def test_origin_allowed(origin: str | None, host: str, allowed: list[str], expected: bool) -> None:
    assert origin_allowed(origin, host, allowed) is expected


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("127.0.0.1:8000", ["127.0.0.1"], True),
        ("localhost", ["localhost"], True),
        ("[::1]:8000", ["[::1]"], True),
        ("evil.example:8000", ["localhost", "127.0.0.1"], False),
        ("chat.example.com", [".example.com"], True),
        ("example.com.", [".example.com"], True),
        ("anything.test", ["*"], True),
        (None, ["*"], False),
        ("", ["*"], False),
        ("bad host", ["*"], False),
        ("a@b", ["*"], False),
    ],
)
def test_host_allowed_is_djangos_allowed_hosts_check(
    host: str | None, allowed: list[str], expected: bool
) -> None:
    assert host_allowed(host, allowed) is expected


async def _handshake(
    check: OriginCheck, headers: list[tuple[bytes, bytes]], extension: bool
) -> tuple[bool, list[dict[str, Any]]]:
    called = False
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal called
        called = True

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    check.app = app
    extensions = {"websocket.http.response": {}} if extension else {}
    await check({"type": "websocket", "headers": headers, "extensions": extensions}, receive, send)
    return called, sent


async def test_origin_check_answers_400_for_a_host_outside_allowed_hosts() -> None:
    check = OriginCheck(None, allowed_hosts=["127.0.0.1"], allowed_origins=[])  # type: ignore[arg-type]
    before = refusals["host"]
    called, sent = await _handshake(check, [(b"host", b"rebound.example:8000")], extension=True)
    assert not called
    assert sent[0]["type"] == "websocket.http.response.start" and sent[0]["status"] == 400
    assert b"Host" in sent[1]["body"]
    assert refusals["host"] == before + 1

    called, sent = await _handshake(
        check, [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://evil.test")], extension=True
    )
    assert not called and sent[0]["status"] == 403

    called, sent = await _handshake(check, [(b"host", b"127.0.0.1:8000")], extension=True)
    assert called and sent == []


async def test_origin_allow_list_comes_from_the_setting(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CHANNELS_SCALE_ALLOWED_ORIGINS = ["https://app.example.com"]
    check = OriginCheck(None)  # type: ignore[arg-type]
    page = [(b"host", b"127.0.0.1:8000"), (b"origin", b"https://app.example.com")]
    assert (await _handshake(check, page, extension=True))[0]
    other = [(b"host", b"127.0.0.1:8000"), (b"origin", b"https://127.0.0.1")]
    called, sent = await _handshake(check, other, extension=False)
    assert not called and sent == [{"type": "websocket.close", "code": 1008}]


async def test_origin_check_refuses_foreign_origin_before_the_app_runs() -> None:
    called = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal called
        called = True

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "headers": [(b"origin", b"http://evil.test"), (b"host", b"a:1")]}
    await OriginCheck(app, ["a"])(scope, receive, send)
    assert not called
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_origin_check_is_an_asgi3_application_to_servers_and_routers() -> None:
    """Its ``__call__`` is no ``async def`` (no frame kept per connection): uvicorn and asgiref
    (daphne) must still see an ASGI 3 application, not call it the ASGI 2 way."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    check = OriginCheck(app, ["a"])
    assert asyncio.iscoroutinefunction(check.__call__)  # uvicorn's test (Config.load)
    assert guarantee_single_callable(check) is check  # asgiref's (daphne calls it)


async def test_worker_middleware_counts_open_websockets_and_answers_health() -> None:
    middleware: WorkerMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        assert middleware.open_websockets == 1

    middleware = WorkerMiddleware(app, worker_id="3")

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware({"type": "websocket", "headers": []}, receive, send)
    assert middleware.open_websockets == 0
    from channels_scale.consumers import COUNTERS

    COUNTERS["not_found"] += 1  # as if a handshake had matched no route
    await middleware({"type": "http", "path": "/healthz", "headers": []}, receive, send)
    body = json.loads(sent[-1]["body"])
    assert body["worker"] == "3"
    assert body["websockets"] == 0
    assert body["limits"] == dict(COUNTERS)  # how often each consumer limit answered
    assert body["limits"]["not_found"] >= 1
