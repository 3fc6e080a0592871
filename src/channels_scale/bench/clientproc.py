"""One client process of the load generator (runs inside a process of its own).

It holds a share of the connections and answers the parent's commands, read from a
multiprocessing queue in a thread so the asyncio loop (uvloop) never blocks:

- ``("connect", specs, concurrency, open_timeout)``: open websockets, at most ``concurrency``
  handshakes at a time, from the given loopback source addresses; reply ``connected``;
- ``("phase", spec)``: publish on this process's publishers at the fixed rate, record every
  received frame's latency from its scheduled send time and account it per subscriber; optional
  churn; reply ``phase`` with the counters, the latency histogram and this process's CPU time;
- ``("close",)``: close every connection, reply ``closed`` and exit.

Latencies are kept as raw integers during the phase and turned into an HdrHistogram after it, so
the work of recording does not compete with the server while it is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from array import array
from collections.abc import Callable
from typing import Any

from channels_scale.bench import clientlib
from channels_scale.bench.endpoint import Endpoint
from channels_scale.bench.figures import ClientCpu, encode_histogram, histogram_of
from channels_scale.bench.frames import DeliveryCounts, FrameError, SubscriberTrack
from channels_scale.bench.plan import (
    ChurnSpec,
    ConnectReport,
    ConnSpec,
    PhaseReport,
    PhaseSpec,
    now_us,
)


class _Conn:
    __slots__ = ("client", "conn_id", "open", "room", "track")

    def __init__(self, conn_id: int, room: str) -> None:
        self.conn_id = conn_id
        self.room = room
        self.client: clientlib.ClientConnection | None = None
        self.open = False
        self.track: SubscriberTrack | None = None


class _ClientProcess:
    """State of one client process (runs inside it)."""

    def __init__(
        self, index: int, base_url: str, library: str, endpoint: Endpoint, results: Any
    ) -> None:
        self.index = index
        self.base_url = base_url
        self.library = library
        self.endpoint = endpoint
        self.results = results
        self.conns: dict[int, _Conn] = {}
        self.phase = -1
        self.latencies = array("q")
        self.unique = 0
        self.stale = 0
        self.last_receipt_us: int | None = None
        self.closed_during = 0
        self.churn_opened = 0
        self.churn_failed = 0
        self.errors: list[str] = []

    def url(self, room: str) -> str:
        return self.endpoint.url(self.base_url, room)

    def _on_text(self, conn: _Conn) -> Callable[[bytes], None]:
        decode = self.endpoint.decode

        def on_text(data: bytes) -> None:
            received = now_us()
            try:
                phase, pub, seq, scheduled = decode(data)
            except FrameError:
                self.stale += 1
                return
            track = conn.track
            if phase != self.phase or track is None:
                self.stale += 1
                return
            self.latencies.append(received - scheduled)
            self.last_receipt_us = received
            if track.record(pub, seq):
                self.unique += 1

        return on_text

    def _on_close(self, conn: _Conn) -> Callable[[], None]:
        def on_close() -> None:
            if conn.open and self.phase >= 0:
                self.closed_during += 1
            conn.open = False

        return on_close

    async def connect(self, specs: list[ConnSpec], concurrency: int, open_timeout: float) -> None:
        report = ConnectReport()
        gate = asyncio.Semaphore(max(concurrency, 1))
        started = time.monotonic()
        handshakes = array("q")

        async def one(spec: ConnSpec) -> None:
            conn = _Conn(spec.conn_id, spec.room)
            async with gate:
                began = now_us()
                try:
                    conn.client = await clientlib.connect(
                        self.library,
                        self.url(spec.room),
                        self._on_text(conn),
                        self._on_close(conn),
                        local_addr=(spec.source, 0) if spec.source else None,
                        open_timeout=open_timeout,
                        headers=self.endpoint.headers,
                        wire=self.endpoint.wire,
                    )
                except Exception as exc:
                    report.failed += 1
                    if len(report.errors) < 5:
                        report.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return
                handshakes.append(now_us() - began)
            conn.open = True
            self.conns[spec.conn_id] = conn
            report.opened += 1

        await asyncio.gather(*(one(spec) for spec in specs))
        report.seconds = time.monotonic() - started
        report.open_total = sum(1 for c in self.conns.values() if c.open)
        report.histogram = encode_histogram(histogram_of(handshakes))
        self.results.put((self.index, "connected", report))

    async def _publish(self, conn: _Conn, spec: PhaseSpec, sent: dict[int, int]) -> int:
        max_lag = 0
        interval_us = 1e6 / spec.rate
        encode = self.endpoint.encode
        start_us = spec.start_at_us + spec.offset_us(conn.conn_id)
        for seq in range(spec.msgs):
            scheduled = start_us + round(seq * interval_us)
            delay = scheduled - now_us()
            if delay > 0:
                await asyncio.sleep(delay / 1e6)
            max_lag = max(max_lag, now_us() - scheduled)
            if not conn.open or conn.client is None:
                break
            try:
                await conn.client.send(encode(spec.phase, conn.conn_id, seq, scheduled))
            except Exception as exc:
                self._error(f"publisher {conn.conn_id}: {type(exc).__name__}: {exc}")
                break
            sent[conn.conn_id] = seq + 1
        return max_lag

    async def _churn(self, spec: ChurnSpec, start_at_us: int, hist: array[int]) -> None:
        """Open ``spec.count`` extra connections at ``spec.rate``/s, each held ``spec.hold_s``.

        Counts go to ``self.churn_opened``/``self.churn_failed`` as they happen, so a churn cut
        short by the phase deadline still reports what it did.
        """
        tasks: list[asyncio.Task[None]] = []

        async def one() -> None:
            began = now_us()
            try:
                client = await clientlib.connect(
                    self.library,
                    self.url(spec.room),
                    lambda _: None,
                    lambda: None,
                    open_timeout=10,
                    headers=self.endpoint.headers,
                    wire=self.endpoint.wire,
                )
            except Exception as exc:
                self.churn_failed += 1
                self._error(f"churn connect: {type(exc).__name__}: {exc}")
                return
            hist.append(now_us() - began)
            self.churn_opened += 1
            await asyncio.sleep(spec.hold_s)
            await client.close()

        try:
            for i in range(spec.count):
                delay = start_at_us + round(i * 1e6 / spec.rate) - now_us()
                if delay > 0:
                    await asyncio.sleep(delay / 1e6)
                tasks.append(asyncio.create_task(one()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks), spec.hold_s + 15)
        finally:
            for task in tasks:
                task.cancel()

    def _error(self, text: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(text[:200])

    async def run_phase(self, spec: PhaseSpec) -> None:
        self.latencies = array("q")
        self.unique = 0
        self.stale = 0
        self.last_receipt_us = None
        self.closed_during = 0
        self.churn_opened = 0
        self.churn_failed = 0
        self.errors = []
        counts = DeliveryCounts()
        pubs_in_room: dict[str, int] = {}
        for room in spec.publishers.values():
            pubs_in_room[room] = pubs_in_room.get(room, 0) + 1
        owed = 0
        for conn in self.conns.values():
            conn.track = SubscriberTrack(spec.msgs) if conn.open else None
            if conn.open:
                counts.subscribers_by_room[conn.room] = (
                    counts.subscribers_by_room.get(conn.room, 0) + 1
                )
                owed += spec.msgs * pubs_in_room.get(conn.room, 0)
        sent: dict[int, int] = {}
        cpu0, wall0 = time.process_time(), time.monotonic()
        self.phase = spec.phase
        publishers = [
            asyncio.create_task(self._publish(self.conns[cid], spec, sent))
            for cid in spec.publishers
            if cid in self.conns
        ]
        churn_hist = array("q")
        churn = (
            asyncio.create_task(self._churn(spec.churn, spec.start_at_us, churn_hist))
            if spec.churn is not None
            else None
        )
        deadline = spec.start_at_us + round((spec.scheduled_s + spec.drain_s) * 1e6)
        hold_until = spec.start_at_us + round(spec.hold_s * 1e6)
        next_progress = 0
        while True:
            now = now_us()
            if now >= deadline:
                break
            publishing = any(not t.done() for t in publishers)
            churning = churn is not None and not churn.done()
            if not publishing and not churning and self.unique >= owed and now >= hold_until:
                break
            if now >= next_progress:
                self.results.put((self.index, "progress", len(self.latencies)))
                next_progress = now + 500_000
            await asyncio.sleep(0.05)
        max_lag = 0
        for task in publishers:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                max_lag = max(max_lag, await task)
        if churn is not None:
            if not churn.done():
                churn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await churn
        self.phase = -1
        cpu = ClientCpu(time.process_time() - cpu0, time.monotonic() - wall0)
        for conn in self.conns.values():
            if conn.track is not None:
                counts.add_track(conn.track)
                conn.track = None
        counts.stale = self.stale
        counts.sent_by_publisher = sent
        counts.room_of_publisher = {cid: spec.publishers[cid] for cid in sent}
        report = PhaseReport(
            counts=counts,
            histogram=encode_histogram(histogram_of(self.latencies)),
            cpu=cpu,
            first_scheduled_us=spec.start_at_us if spec.msgs else None,
            last_receipt_us=self.last_receipt_us,
            max_send_lag_us=max_lag,
            closed_during=self.closed_during,
            open_at_end=sum(1 for c in self.conns.values() if c.open),
            churn_opened=self.churn_opened,
            churn_failed=self.churn_failed,
            churn_connect_histogram=encode_histogram(histogram_of(churn_hist)),
            errors=self.errors,
        )
        self.latencies = array("q")
        self.results.put((self.index, "phase", report))

    async def close_all(self) -> None:
        await asyncio.gather(
            *(c.client.close() for c in self.conns.values() if c.client is not None),
            return_exceptions=True,
        )


async def _serve(process: _ClientProcess, commands: Any) -> None:
    loop = asyncio.get_running_loop()
    process.results.put((process.index, "ready", None))
    while True:
        command = await loop.run_in_executor(None, commands.get)
        kind = command[0]
        if kind == "connect":
            await process.connect(command[1], command[2], command[3])
        elif kind == "phase":
            await process.run_phase(command[1])
        else:
            await process.close_all()
            process.results.put((process.index, "closed", None))
            return


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def client_main(
    index: int, base_url: str, library: str, endpoint: Endpoint, commands: Any, results: Any
) -> None:
    """Entry point of one client process."""
    import uvloop

    raise_fd_limit()
    process = _ClientProcess(index, base_url, library, endpoint, results)
    try:
        uvloop.run(_serve(process, commands))
    except Exception as exc:
        results.put((index, "error", f"{type(exc).__name__}: {exc}"))
