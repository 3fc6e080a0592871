"""A broadcast server that misbehaves on purpose, to prove the bench's figures.

Run as ``python tests/bench/misbehave.py --port P --mode MODE``. It serves
``/ws/broadcast/<room>/`` like every stack, except that frame ``n`` of each room (counted from 0
as the server receives them):

- ``drop``: every 10th frame (n % 10 == 9) is delivered to nobody (10% loss);
- ``delay``: every frame is delivered 50 ms late;
- ``dup``: every 10th frame (n % 10 == 0) is delivered twice;
- ``reorder``: every 10th frame (n % 10 == 0) is held back and delivered after the next one;
- ``slowfirst``: frame 0 of each room stalls the whole server 400 ms before it is delivered (a
  cold path, like a script loaded on first use);
- ``ok``: no misbehaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

DELAY_S = 0.05
FIRST_STALL_S = 0.4


class Misbehaving:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.rooms: dict[str, set[ServerConnection]] = {}
        self.counts: dict[str, int] = {}
        self.held: dict[str, str] = {}

    def deliver(self, name: str, message: str) -> None:
        room = self.rooms.get(name, set())
        n = self.counts.get(name, 0)
        self.counts[name] = n + 1
        loop = asyncio.get_running_loop()
        if self.mode == "slowfirst" and n == 0:
            time.sleep(FIRST_STALL_S)  # blocks the loop on purpose: every connection waits
        if self.mode == "drop" and n % 10 == 9:
            return
        if self.mode == "delay":
            loop.call_later(DELAY_S, broadcast, room, message)
            return
        if self.mode == "reorder" and n % 10 == 0:
            self.held[name] = message
            return
        broadcast(room, message)
        if self.mode == "dup" and n % 10 == 0:
            broadcast(room, message)
        if name in self.held:
            broadcast(room, self.held.pop(name))

    async def handler(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        name = connection.request.path
        self.rooms.setdefault(name, set()).add(connection)
        try:
            async for message in connection:
                if isinstance(message, str):
                    self.deliver(name, message)
        except ConnectionClosed:
            pass
        finally:
            self.rooms[name].discard(connection)


async def main(port: int, mode: str) -> None:
    app = Misbehaving(mode)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(app.handler, "127.0.0.1", port, compression=None):
        with contextlib.suppress(asyncio.CancelledError):
            await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--mode", choices=("ok", "drop", "delay", "dup", "reorder", "slowfirst"), required=True
    )
    args = parser.parse_args()
    asyncio.run(main(args.port, args.mode))
