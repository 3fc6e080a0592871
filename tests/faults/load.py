"""Load for the fault suite: real websocket clients that reconnect, resume and keep the score.

- :class:`StreamClient` on ``/ws/stream/<room>/`` (:mod:`tests.faults.stackapp`): sends a JSON
  message every ``interval`` seconds while connected, follows the room's stream by ``(epoch,
  offset)`` and reconnects with ``?epoch=&offset=`` after any drop (full-jitter backoff, as
  ``client.js``). It counts what the recovery protocol promises never happens: an offset skipped
  (``lost``), one delivered twice (``duplicate``), an epoch change without ``reload``
  (``silent_epoch``), two clients seeing different messages at one position (``mismatch``).
- :class:`CanaryClient` on ``/ws/broadcast/<room>/`` (no history): sends a frame every
  ``interval`` seconds, counts frames and ``not_delivered`` error frames.

Both count drops and close codes, and record when each reconnection dropped and was served again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from channels_scale.net import timeout_factor

#: most connection attempts per client per case: a stack that never recovers fails, not loops
MAX_CONNECTS = 200
BACKOFF_BASE = 0.05  # seconds; full jitter, doubled per failed attempt ...
BACKOFF_CAP = 1.0  # ... up to this
STABLE_AFTER = 2.0  # a connection up this long resets the backoff


class Client:
    """One websocket client that reconnects until stopped (subclasses speak the endpoint)."""

    kind = "client"
    #: whether the handshake alone means served (else the endpoint's first frame says so)
    served_on_handshake = True

    def __init__(self, ident: int, base_url: str, interval: float) -> None:
        self.ident = ident
        self.base_url = base_url
        self.interval = interval
        self.counts: Counter[str] = Counter()
        #: (dropped at, served again at) per reconnection, ``time.monotonic()``
        self.reconnections: list[tuple[float, float]] = []
        self.is_open = False
        self.dropped_at: float | None = None
        self.ws: ClientConnection | None = None

    def url(self) -> str:
        return self.base_url

    def served(self) -> None:
        """The endpoint serves us (after the handshake, or the endpoint's welcome)."""
        if not self.is_open:
            self.is_open = True
            if self.dropped_at is not None:
                self.reconnections.append((self.dropped_at, time.monotonic()))
                self.dropped_at = None

    def handle(self, raw: str) -> None:
        raise NotImplementedError

    def message(self, n: int) -> str:
        raise NotImplementedError

    async def _send_loop(self, ws: ClientConnection) -> None:
        n = 0
        with contextlib.suppress(WebSocketException):
            while True:
                await ws.send(self.message(n))
                self.counts["sent"] += 1
                n += 1
                await asyncio.sleep(self.interval)  # pacing of the load, not synchronisation

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            if self.counts["connects"] >= MAX_CONNECTS:
                self.counts["gave_up"] += 1
                return
            self.counts["connects"] += 1
            started = time.monotonic()
            try:
                async with connect(
                    self.url(), open_timeout=10 * timeout_factor(), close_timeout=2
                ) as ws:
                    self.ws = ws
                    if self.served_on_handshake:
                        self.served()
                    sender = asyncio.create_task(self._send_loop(ws))
                    try:
                        async for raw in ws:
                            self.handle(str(raw))
                    finally:
                        sender.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await sender
                    code = ws.close_code
            except (OSError, TimeoutError, WebSocketException) as exc:
                code = getattr(self.ws, "close_code", None) if self.ws else None
                status = getattr(getattr(exc, "response", None), "status_code", None)
                self.counts[
                    f"failed_http_{status}" if status else "failed_" + type(exc).__name__
                ] += 1
            self.ws = None
            if code is not None:
                self.counts[f"close_{code}"] += 1
            if self.is_open:
                self.is_open = False
                if not stop.is_set():
                    self.dropped_at = time.monotonic()
                    self.counts["drops"] += 1
            if stop.is_set():
                return
            attempt = 0 if time.monotonic() - started > STABLE_AFTER else attempt + 1
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


class StreamClient(Client):
    """A client of ``/ws/stream/<room>/`` that resumes from its position (see module doc)."""

    kind = "stream"
    served_on_handshake = False  # served once the consumer sent "welcome" (it joined the group)

    def __init__(
        self, ident: int, base_url: str, interval: float, registry: dict[tuple[str, int], str]
    ) -> None:
        super().__init__(ident, base_url, interval)
        self.registry = registry  # (epoch, offset) -> message id, shared by every client
        self.epoch: str | None = None
        self.offset = 0
        self.last_sent_at = 0.0  # send time of the newest message received (same clock)
        self.reloads: Counter[str] = Counter()

    def url(self) -> str:
        if self.epoch is None:
            return self.base_url
        return f"{self.base_url}?epoch={self.epoch}&offset={self.offset}"

    def message(self, n: int) -> str:
        return json.dumps({"id": f"{self.ident}:{n}", "t": time.monotonic()})

    def handle(self, raw: str) -> None:
        frame: dict[str, Any] = json.loads(raw)
        kind = frame.get("type")
        if kind == "welcome":
            self.served()
        elif kind == "reload":
            self.reloads[str(frame["reason"])] += 1
            self.epoch, self.offset = str(frame["epoch"]), int(frame["offset"])
        elif kind == "error":
            self.counts[str(frame.get("code"))] += 1
        elif "offset" in frame:
            self._stream_message(str(frame["epoch"]), int(frame["offset"]), frame["data"])
        else:
            self.counts["unexpected_frame"] += 1

    def _stream_message(self, epoch: str, offset: int, data: dict[str, Any]) -> None:
        self.counts["received"] += 1
        seen = self.registry.setdefault((epoch, offset), data["id"])
        if seen != data["id"]:
            self.counts["mismatch"] += 1
        if self.epoch is None:
            pass  # a new client starts wherever the stream is
        elif epoch != self.epoch:
            self.counts["silent_epoch"] += 1
        elif offset <= self.offset:
            self.counts["duplicate"] += 1
            return
        elif offset > self.offset + 1:
            self.counts["lost"] += offset - self.offset - 1
        self.epoch, self.offset = epoch, offset
        self.last_sent_at = max(self.last_sent_at, float(data["t"]))


class CanaryClient(Client):
    """A client of ``/ws/broadcast/<room>/`` (no history): frames and ``not_delivered``."""

    kind = "canary"

    def message(self, n: int) -> str:
        return f"canary {self.ident}:{n}"

    def handle(self, raw: str) -> None:
        if raw.startswith('{"type":"error"'):
            self.counts[str(json.loads(raw).get("code"))] += 1
        else:
            self.counts["received"] += 1


class Load:
    """``streams`` stream clients and ``canaries`` broadcast clients on one room, running."""

    def __init__(self, ws_url: str, room: str, streams: int, canaries: int, interval: float):
        self.registry: dict[tuple[str, int], str] = {}
        self.streams = [
            StreamClient(i, f"{ws_url}/ws/stream/{room}/", interval, self.registry)
            for i in range(streams)
        ]
        self.canaries = [
            CanaryClient(i, f"{ws_url}/ws/broadcast/{room}/", interval) for i in range(canaries)
        ]
        self.clients: list[Client] = [*self.streams, *self.canaries]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(c.run(self._stop)) for c in self.clients]

    async def stop(self) -> None:
        self._stop.set()
        for client in self.clients:
            if client.ws is not None:
                with contextlib.suppress(WebSocketException, OSError):
                    await client.ws.close()
        async with asyncio.timeout(20 * timeout_factor()):
            await asyncio.gather(*self._tasks)

    def all_open(self) -> bool:
        return all(c.is_open for c in self.clients)

    def flowing_since(self, moment: float) -> bool:
        """Every stream client received a message sent after ``moment``."""
        return all(c.last_sent_at > moment for c in self.streams)

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for client in self.clients:
            total.update({f"{client.kind}.{k}": v for k, v in client.counts.items()})
        for stream in self.streams:
            total.update({f"reload.{k}": v for k, v in stream.reloads.items()})
        return total

    def failed_tasks(self) -> list[BaseException]:
        return [e for t in self._tasks if t.done() and (e := t.exception()) is not None]
