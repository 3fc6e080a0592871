"""The websocket route of last resort: a path that matches no route gets HTTP 404.

Channels' ``URLRouter`` raises ``ValueError("No route found for path ...")`` for a websocket path
it cannot match; the ASGI server then logs a traceback and answers HTTP 500, once per request.
Put :data:`not_found_route` last in a ``URLRouter`` instead: the handshake is refused with HTTP
404 (the ASGI ``websocket.http.response`` extension, which uvicorn and daphne offer) or, on a
server without it, closed before it is accepted (the server answers HTTP 403). Nothing is
logged; :data:`~channels_scale.consumers.limits.COUNTERS` ``["not_found"]`` counts them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.urls import re_path

from channels_scale.closecodes import HTTP_NOT_FOUND
from channels_scale.consumers.limits import COUNTERS

__all__ = ["not_found_route", "websocket_not_found"]

_BODY = b"no websocket endpoint at this path\n"


async def websocket_not_found(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """Refuse the handshake: HTTP 404 when the server can send it, else close before accept."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    COUNTERS["not_found"] += 1
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": HTTP_NOT_FOUND,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": _BODY})
    else:
        await send({"type": "websocket.close", "code": 1000})


#: ``re_path`` that matches every path: the last entry of a websocket ``URLRouter``
not_found_route = re_path(r"", websocket_not_found)  # type: ignore[arg-type]
