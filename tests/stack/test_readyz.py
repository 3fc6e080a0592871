"""``/readyz`` and ``/drainz`` of the worker middleware, as ASGI calls, against a real Redis."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from channels_scale.asgi import CONTROL_TOKEN_FILE_ENV, WorkerMiddleware
from channels_scale.net import free_port


async def _get(middleware: WorkerMiddleware, path: str, **extra: Any) -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
    await middleware({**scope, **extra}, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app must not be called")


def _layer(settings: Any, url: str) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_scale.layer.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": "readyz"},
        }
    }


# get_channel_layer() reads Django's settings: pytest-django's `settings` fixture swaps them.
async def test_ready_when_the_layer_round_trips(settings: Any, shared_redis: Any) -> None:
    _layer(settings, shared_redis.url)
    status, answer = await _get(WorkerMiddleware(_noop, "1"), "/readyz")
    assert status == 200, answer
    assert answer["ready"] is True and answer["round_trip_ms"] >= 0
    assert answer["layer"] == {
        "backend": "channels_scale.layer.RedisChannelLayer", "hosts": shared_redis.url,
    }  # fmt: skip


async def test_not_ready_when_the_layer_redis_is_down(settings: Any) -> None:
    # Our layer delivers to its own process without Redis: the Redis ping must catch this.
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    _layer(settings, nowhere)
    status, answer = await _get(WorkerMiddleware(_noop, "1"), "/readyz")
    assert status == 503
    assert answer["ready"] is False and nowhere in answer["reason"], answer


async def test_drain_needs_the_token_then_sheds_websockets_with_1012(
    settings: Any, shared_redis: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _layer(settings, shared_redis.url)
    token = tmp_path / "control.token"
    token.write_text("s3cret")
    monkeypatch.setenv(CONTROL_TOKEN_FILE_ENV, str(token))
    closed: list[dict[str, Any]] = []
    disconnect = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        await disconnect.wait()

    middleware = WorkerMiddleware(app, "0")

    async def ws_receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def ws_send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":
            closed.append(message)
            disconnect.set()

    connection = asyncio.create_task(middleware({"type": "websocket"}, ws_receive, ws_send))
    await asyncio.sleep(0)
    assert middleware.open_websockets == 1

    wrong = [(b"x-channels-scale-token", b"guess")]
    status, _ = await _get(middleware, "/drainz", method="POST", headers=wrong)
    assert status == 403 and not middleware.draining
    status, _ = await _get(middleware, "/drainz", headers=[(b"x-channels-scale-token", b"s3cret")])
    assert status == 403, "GET must not drain"

    right = [(b"x-channels-scale-token", b"s3cret")]
    status, answer = await _get(
        middleware, "/drainz", method="POST", headers=right, query_string=b"close=5"
    )
    assert status == 200 and answer["closed"] == 1
    assert closed == [{"type": "websocket.close", "code": 1012}]
    await asyncio.wait_for(connection, 5)
    assert middleware.open_websockets == 0
    status, answer = await _get(middleware, "/readyz")
    assert status == 503 and answer["reason"] == "draining"
