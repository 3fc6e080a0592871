"""The ceiling: a bare ``websockets`` broadcast server, no Django, no Channels, no Redis.

Run as ``python -m channels_scale.bench.ceiling --port P``. It serves the broadcast endpoint every
stack serves, ``/ws/broadcast/<room>/`` (every text frame a client sends goes verbatim to every
connection in the room, the sender included), and ``GET /healthz``.

It is one process on one asyncio loop (uvloop when installed), whatever ``--workers`` the bench was
given: several processes could not share rooms without a broker, and a broker is exactly what
the ceiling leaves out. So it shows what one Python process can deliver here, the honest upper
bound for one worker of any Python stack; the report says so next to its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

ROOM_PATH = re.compile(r"^/ws/broadcast/([A-Za-z0-9_.-]{1,80})/$")
MAX_MESSAGE_BYTES = 65536


class BroadcastServer:
    """Room membership and the websocket handler of the ceiling server."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[ServerConnection]] = {}

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if ROOM_PATH.match(request.path) is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return None

    async def handler(self, connection: ServerConnection) -> None:
        match = ROOM_PATH.match(connection.request.path if connection.request else "")
        if match is None:
            return
        name = match.group(1)
        room = self.rooms.setdefault(name, set())
        room.add(connection)
        try:
            async for message in connection:
                if isinstance(message, str):
                    broadcast(room, message)
        except ConnectionClosed:
            pass  # a client that vanishes without a close frame is normal under load
        finally:
            room.discard(connection)
            if not room:
                self.rooms.pop(name, None)


async def run(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    app = BroadcastServer()
    stop = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    server: Server
    async with serve(
        app.handler,
        host,
        port,
        process_request=app.process_request,
        compression=None,
        max_size=MAX_MESSAGE_BYTES,
        server_header=None,
    ) as server:
        await stop
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(run(args.host, args.port))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
