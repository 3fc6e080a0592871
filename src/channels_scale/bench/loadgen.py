"""The load generator: client processes (asyncio + uvloop) driven phase by phase by the parent.

Each client process holds a share of the connections (connection ``i`` lives in process
``i % procs``) and answers commands from the parent:

- *connect*: open websockets to ``/ws/broadcast/<room>/``, at most ``concurrency`` handshakes at a
  time, from the given loopback source addresses;
- *phase*: every connection publishing in this process sends ``msgs`` frames at a fixed ``rate``
  from a common start time; every connection records latency from each frame's scheduled send
  time and accounts loss, duplicates and reordering; an optional churn loop opens and closes extra
  connections at a fixed rate; the phase ends when every frame owed has arrived or at the drain
  deadline, whichever is first;
- *close*: close every connection and exit.

Latencies are kept as raw integers during the phase and turned into an HdrHistogram after it, so
the work of recording does not compete with the server while it is measured. Each process reports
its own CPU time for the phase, so a saturated load generator is visible in the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import resource
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels_scale.bench import clientlib
from channels_scale.bench.figures import ClientCpu, encode_histogram, histogram_of
from channels_scale.bench.frames import (
    DeliveryCounts,
    FrameError,
    SubscriberTrack,
    decode_frame,
    encode_frame,
)

SPREAD_THRESHOLD = 1000
"""From this many connections, clients bind source addresses spread over 127.0.0.0/8."""

CONNECTIONS_PER_SOURCE = 1000
"""Connections bound to one source address when spreading."""


def source_address(index: int, total: int) -> str | None:
    """The loopback source address of connection ``index`` of ``total`` (``None``: let the OS pick).

    Above :data:`SPREAD_THRESHOLD` connections, every :data:`CONNECTIONS_PER_SOURCE` connections
    get their own address in 127.0.0.0/8 (127.0.1.2, 127.0.1.3, ...), so no single
    source/destination pair runs out of ephemeral ports.
    """
    if total < SPREAD_THRESHOLD:
        return None
    k = index // CONNECTIONS_PER_SOURCE
    return f"127.0.{1 + (k // 250) % 254}.{2 + k % 250}"


def now_us() -> int:
    """Microseconds of ``CLOCK_MONOTONIC``: the same clock in every process of the machine."""
    return time.monotonic_ns() // 1000


@dataclass(frozen=True)
class ConnSpec:
    """One connection to open: its id (also its publisher id), room and source address."""

    conn_id: int
    room: str
    source: str | None = None


@dataclass(frozen=True)
class ChurnSpec:
    """Extra connections opened at ``rate`` per second into ``room``, each held ``hold_s``."""

    room: str
    rate: float
    hold_s: float
    count: int


@dataclass(frozen=True)
class PhaseSpec:
    """One load phase: who publishes, how fast, how long, and how long to wait for stragglers.

    ``publishers`` maps the publishing connection ids to their rooms. ``start_at_us`` is the
    common start on the monotonic clock; frame ``k`` of every publisher is scheduled at
    ``start_at_us + k / rate`` seconds. ``hold_s`` keeps a phase with no publishers open that long
    (the idle scenario).
    """

    phase: int
    publishers: dict[int, str]
    rate: float
    msgs: int
    start_at_us: int
    drain_s: float
    hold_s: float = 0.0
    churn: ChurnSpec | None = None

    @property
    def nominal_s(self) -> float:
        """Seconds the offered load lasts: ``msgs / rate`` (or the hold time)."""
        if self.msgs and self.rate > 0:
            return max(self.msgs / self.rate, self.hold_s)
        return self.hold_s

    @property
    def scheduled_s(self) -> float:
        """Seconds from the start to the last scheduled frame (or the hold time)."""
        if self.msgs and self.rate > 0:
            return max((self.msgs - 1) / self.rate, self.hold_s)
        return self.hold_s


@dataclass
class ConnectReport:
    """What one process's connect step did."""

    opened: int = 0
    failed: int = 0
    seconds: float = 0.0
    open_total: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class PhaseReport:
    """What one process measured in a phase (merged by the parent)."""

    counts: DeliveryCounts
    histogram: bytes
    cpu: ClientCpu
    first_scheduled_us: int | None
    last_receipt_us: int | None
    max_send_lag_us: int
    closed_during: int
    open_at_end: int
    churn_opened: int = 0
    churn_failed: int = 0
    churn_connect_histogram: bytes = b""
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- client process


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

    def __init__(self, index: int, base_url: str, library: str, results: Any) -> None:
        self.index = index
        self.base_url = base_url
        self.library = library
        self.results = results
        self.conns: dict[int, _Conn] = {}
        self.phase = -1
        self.latencies = array("q")
        self.unique = 0
        self.stale = 0
        self.last_receipt_us: int | None = None
        self.closed_during = 0
        self.errors: list[str] = []

    def url(self, room: str) -> str:
        return f"{self.base_url}/ws/broadcast/{room}/"

    def _on_text(self, conn: _Conn) -> Callable[[bytes], None]:
        def on_text(data: bytes) -> None:
            received = now_us()
            try:
                phase, pub, seq, scheduled = decode_frame(data)
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

        async def one(spec: ConnSpec) -> None:
            conn = _Conn(spec.conn_id, spec.room)
            async with gate:
                try:
                    conn.client = await clientlib.connect(
                        self.library,
                        self.url(spec.room),
                        self._on_text(conn),
                        self._on_close(conn),
                        local_addr=(spec.source, 0) if spec.source else None,
                        open_timeout=open_timeout,
                    )
                except Exception as exc:
                    report.failed += 1
                    if len(report.errors) < 5:
                        report.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return
            conn.open = True
            self.conns[spec.conn_id] = conn
            report.opened += 1

        await asyncio.gather(*(one(spec) for spec in specs))
        report.seconds = time.monotonic() - started
        report.open_total = sum(1 for c in self.conns.values() if c.open)
        self.results.put((self.index, "connected", report))

    async def _publish(self, conn: _Conn, spec: PhaseSpec, sent: dict[int, int]) -> int:
        max_lag = 0
        interval_us = 1e6 / spec.rate
        for seq in range(spec.msgs):
            scheduled = spec.start_at_us + round(seq * interval_us)
            delay = scheduled - now_us()
            if delay > 0:
                await asyncio.sleep(delay / 1e6)
            max_lag = max(max_lag, now_us() - scheduled)
            if not conn.open or conn.client is None:
                break
            try:
                await conn.client.send(encode_frame(spec.phase, conn.conn_id, seq, scheduled))
            except Exception as exc:
                self._error(f"publisher {conn.conn_id}: {type(exc).__name__}: {exc}")
                break
            sent[conn.conn_id] = seq + 1
        return max_lag

    async def _churn(self, spec: ChurnSpec, start_at_us: int, hist: array[int]) -> tuple[int, int]:
        opened = failed = 0
        tasks: list[asyncio.Task[None]] = []

        async def one() -> None:
            nonlocal opened, failed
            began = now_us()
            try:
                client = await clientlib.connect(
                    self.library, self.url(spec.room), lambda _: None, lambda: None, open_timeout=10
                )
            except Exception as exc:
                failed += 1
                self._error(f"churn connect: {type(exc).__name__}: {exc}")
                return
            hist.append(now_us() - began)
            opened += 1
            await asyncio.sleep(spec.hold_s)
            await client.close()

        for i in range(spec.count):
            delay = start_at_us + round(i * 1e6 / spec.rate) - now_us()
            if delay > 0:
                await asyncio.sleep(delay / 1e6)
            tasks.append(asyncio.create_task(one()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks), spec.hold_s + 15)
        return opened, failed

    def _error(self, text: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(text[:200])

    async def run_phase(self, spec: PhaseSpec) -> None:
        self.latencies = array("q")
        self.unique = 0
        self.stale = 0
        self.last_receipt_us = None
        self.closed_during = 0
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
        churn_opened = churn_failed = 0
        if churn is not None:
            if not churn.done():
                churn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                churn_opened, churn_failed = await churn
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
            churn_opened=churn_opened,
            churn_failed=churn_failed,
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


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def client_main(index: int, base_url: str, library: str, commands: Any, results: Any) -> None:
    """Entry point of one client process."""
    import uvloop

    _raise_fd_limit()
    process = _ClientProcess(index, base_url, library, results)
    try:
        uvloop.run(_serve(process, commands))
    except Exception as exc:
        results.put((index, "error", f"{type(exc).__name__}: {exc}"))


# --------------------------------------------------------------------------- parent


class LoadGenError(RuntimeError):
    """A client process failed or did not answer in time."""


class LoadGenerator:
    """Spawns ``procs`` client processes against ``base_url`` (``ws://host:port``) and drives them.

    Use as a context manager; every wait is bounded and leaving the block ends the processes.
    """

    def __init__(self, base_url: str, procs: int, library: str = clientlib.DEFAULT_LIBRARY) -> None:
        self.base_url = base_url.rstrip("/")
        self.procs = max(procs, 1)
        self.library = library
        self.fd_limit = _raise_fd_limit()
        ctx = multiprocessing.get_context("spawn")
        self._results: Any = ctx.Queue()
        self._commands: list[Any] = [ctx.Queue() for _ in range(self.procs)]
        self._processes = [
            ctx.Process(
                target=client_main,
                args=(i, self.base_url, library, self._commands[i], self._results),
                name=f"bench-client-{i}",
                daemon=True,
            )
            for i in range(self.procs)
        ]

    def __enter__(self) -> LoadGenerator:
        for proc in self._processes:
            proc.start()
        try:
            self._gather("ready", 60)
        except BaseException:
            self._terminate()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def pids(self) -> list[int]:
        """Process ids of the client processes."""
        return [p.pid for p in self._processes if p.pid is not None]

    def _gather(
        self, kind: str, timeout: float, progress: Callable[[int], None] | None = None
    ) -> list[Any]:
        replies: dict[int, Any] = {}
        seen: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while len(replies) < self.procs:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadGenError(f"client processes did not report {kind!r} in {timeout:.0f} s")
            try:
                index, what, payload = self._results.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                dead = [p.name for p in self._processes if not p.is_alive()]
                if dead and kind != "closed":
                    raise LoadGenError(f"client process died: {', '.join(dead)}") from None
                continue
            if what == "error":
                raise LoadGenError(f"client process {index} failed: {payload}")
            if what == "progress":
                seen[index] = payload
                if progress is not None:
                    progress(sum(seen.values()))
            elif what == kind:
                replies[index] = payload
        return [replies[i] for i in range(self.procs)]

    def connect(
        self, specs: list[ConnSpec], concurrency: int = 50, timeout: float = 120
    ) -> ConnectReport:
        """Open ``specs`` (spread over the processes); returns the summed report."""
        shares: list[list[ConnSpec]] = [[] for _ in range(self.procs)]
        for spec in specs:
            shares[spec.conn_id % self.procs].append(spec)
        per_proc = max(concurrency // self.procs, 1)
        for i, share in enumerate(shares):
            self._commands[i].put(("connect", share, per_proc, 10.0))
        total = ConnectReport()
        for report in self._gather("connected", timeout):
            total.opened += report.opened
            total.failed += report.failed
            total.seconds = max(total.seconds, report.seconds)
            total.open_total += report.open_total
            total.errors.extend(report.errors[: 5 - len(total.errors)])
        return total

    def run_phase(
        self, spec: PhaseSpec, progress: Callable[[int], None] | None = None
    ) -> list[PhaseReport]:
        """Run one phase in every process; returns one report per process."""
        for i in range(self.procs):
            churn = spec.churn if i == self.procs - 1 else None
            self._commands[i].put(("phase", _with_churn(spec, churn)))
        timeout = (spec.start_at_us - now_us()) / 1e6 + spec.scheduled_s + spec.drain_s + 60
        return self._gather("phase", timeout, progress)

    def close(self) -> None:
        """Close every connection and end the processes (bounded wait, then kill)."""
        for commands, proc in zip(self._commands, self._processes, strict=True):
            if proc.is_alive():
                commands.put(("close",))
        with contextlib.suppress(LoadGenError):
            self._gather("closed", 15)
        self._terminate()

    def _terminate(self) -> None:
        for proc in self._processes:
            if proc.pid is None:
                continue
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


def _with_churn(spec: PhaseSpec, churn: ChurnSpec | None) -> PhaseSpec:
    return PhaseSpec(
        phase=spec.phase,
        publishers=spec.publishers,
        rate=spec.rate,
        msgs=spec.msgs,
        start_at_us=spec.start_at_us,
        drain_s=spec.drain_s,
        hold_s=spec.hold_s,
        churn=churn,
    )
