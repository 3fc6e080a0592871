"""The worker middleware and the origin check, as pure ASGI (no server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from channels_scale.asgi import OriginCheck, WorkerMiddleware, origin_allowed


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
    ],
)
def test_origin_allowed(origin: str | None, host: str, allowed: list[str], expected: bool) -> None:
    assert origin_allowed(origin, host, allowed) is expected


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
