"""Chat clients for the multi-host test, run in a client machine: JSON lines in and out.

``python -m tests.multihost.client --clients N URL [URL ...]`` runs N websocket clients of the
example chat. Each URL is a host's room endpoint with its ``?token=``; a client connects to the
first URL and, after any drop or failed attempt, tries the next one in the list (round robin: the
clients' own failover between hosts, as a client given several addresses does), waiting a
full-jitter backoff first (``random(0, min(cap, base * 2**attempt))``, base 0.5 s as
``client.js``). It resumes with ``&epoch=E&offset=N&prev=CONN`` from the last message it got
(docs/recovery.md). It reports what it receives exactly as received (no de-duplication: the test
counts duplicates and gaps) on stdout, one JSON object per line, with ``time.monotonic()``
(one clock for every process of the machine):

- ``{"ev": "open", "c": i, "host": k, "attempt_t": t0, "t": t, "resume": offset|null}`` when the
  consumer's ``welcome`` arrives (it has joined the room), ``attempt_t`` when the connect began;
- ``{"ev": "msg", "c": i, "epoch": e, "offset": n, "text": s, "t": t}`` a room message;
- ``{"ev": "drop", "c": i, "host": k, "code": code}``; ``{"ev": "fail", "c": i, "host": k,
  "error": s}``; ``{"ev": "frame", "c": i, "frame": f}`` anything else (reload, errors);
- ``{"ev": "sent", "c": i, "text": s}`` once a frame is handed to the connection.

Commands on stdin, one JSON object per line: ``{"cmd": "send", "c": i, "text": s}``;
``{"cmd": "publish", "c": i, "every": seconds, "prefix": p}`` (send ``p-0``, ``p-1``, … while
connected, until ``{"cmd": "quiet", "c": i}``, answered ``{"ev": "quiet"}``); ``{"cmd": "hold",
"c": i}`` (answered ``{"ev": "held"}``; after a drop, wait for ``{"cmd": "release", "c": i}``
before reconnecting: the test decides how long the client stays away). End of stdin closes every
client and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

BACKOFF_BASE = 0.5
BACKOFF_CAP = 2.0
STABLE_AFTER = 2.0  # a connection up this long resets the backoff


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class ChatClient:
    def __init__(self, index: int, urls: list[str]) -> None:
        self.index = index
        self.urls = urls
        self.host = 0
        self.epoch: str | None = None
        self.offset: int | None = None
        self.conn: str | None = None
        self.ws: ClientConnection | None = None
        self.released = asyncio.Event()
        self.released.set()
        self.publisher: asyncio.Task[None] | None = None

    def url(self) -> str:
        url = self.urls[self.host]
        if self.epoch is not None:
            url += f"&epoch={self.epoch}&offset={self.offset}"
        if self.conn is not None:
            url += f"&prev={self.conn}"
        return url

    async def send(self, text: str) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps({"type": "message", "text": text}))
        except WebSocketException:
            return False
        emit({"ev": "sent", "c": self.index, "text": text})
        return True

    async def publish(self, every: float, prefix: str) -> None:
        n = 0
        while True:
            if await self.send(f"{prefix}-{n}"):
                n += 1
            await asyncio.sleep(every)  # the publishing rate, not synchronisation

    def handle(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "welcome":
            self.conn = str(frame["conn"])
        elif "offset" in frame and "data" in frame:
            self.epoch, self.offset = str(frame["epoch"]), int(frame["offset"])
            emit({
                "ev": "msg", "c": self.index, "epoch": self.epoch, "offset": self.offset,
                "text": frame["data"].get("text"), "t": time.monotonic(),
            })  # fmt: skip
        elif frame.get("type") not in ("presence", "presence.state", "pong"):
            emit({"ev": "frame", "c": self.index, "frame": frame})

    async def run(self) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            resume = self.offset
            code: int | None = None
            opened = False
            try:
                async with connect(self.url(), open_timeout=10, close_timeout=2) as ws:
                    async for raw in ws:
                        frame = json.loads(raw)
                        self.handle(frame)
                        if frame.get("type") == "welcome":
                            opened = True
                            self.ws = ws
                            emit({
                                "ev": "open", "c": self.index, "host": self.host,
                                "attempt_t": started, "t": time.monotonic(), "resume": resume,
                            })  # fmt: skip
                    code = ws.close_code
            except (OSError, TimeoutError, WebSocketException) as exc:
                if not opened:
                    emit({"ev": "fail", "c": self.index, "host": self.host, "error": repr(exc)})
                code = self.ws.close_code if self.ws is not None else None
            self.ws = None
            if opened:
                emit({"ev": "drop", "c": self.index, "host": self.host, "code": code})
            await self.released.wait()
            self.host = (self.host + 1) % len(self.urls)
            attempt = 0 if time.monotonic() - started > STABLE_AFTER else attempt + 1
            await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))


async def commands(clients: list[ChatClient]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        client = clients[int(command["c"])]
        kind = command["cmd"]
        if kind == "send":
            await client.send(str(command["text"]))
        elif kind == "publish":
            client.publisher = asyncio.create_task(
                client.publish(float(command["every"]), str(command["prefix"]))
            )
        elif kind == "quiet" and client.publisher is not None:
            client.publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.publisher
            emit({"ev": "quiet", "c": client.index})
        elif kind == "hold":
            client.released.clear()
            emit({"ev": "held", "c": client.index})
        elif kind == "release":
            client.released.set()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    clients = [ChatClient(i, args.urls) for i in range(args.clients)]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    await commands(clients)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
