"""The load generator: client processes (asyncio + uvloop) driven phase by phase by the parent.

Each client process holds a share of the connections (connection ``i`` lives in process
``i % procs``) and answers commands from the parent:

- *connect*: open websockets to the endpoint's path of each room (``/ws/broadcast/<room>/`` by
  default, :mod:`~channels_scale.bench.endpoint`), at most ``concurrency`` handshakes at a
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

import contextlib
import multiprocessing
import queue
import time
from collections.abc import Callable
from typing import Any

from channels_scale.bench import clientlib
from channels_scale.bench.clientproc import client_main, raise_fd_limit
from channels_scale.bench.endpoint import Endpoint
from channels_scale.bench.figures import encode_histogram, merge_histograms
from channels_scale.bench.plan import (
    ChurnSpec,
    ConnectReport,
    ConnSpec,
    PhaseReport,
    PhaseSpec,
    now_us,
    source_address,
)

__all__ = [
    "ChurnSpec",
    "ConnSpec",
    "ConnectReport",
    "LoadGenError",
    "LoadGenerator",
    "PhaseReport",
    "PhaseSpec",
    "now_us",
    "source_address",
]


class LoadGenError(RuntimeError):
    """A client process failed or did not answer in time."""


class LoadGenerator:
    """Spawns ``procs`` client processes against ``base_url`` (``ws://host:port``) and drives them.

    Use as a context manager; every wait is bounded and leaving the block ends the processes.
    """

    def __init__(
        self,
        base_url: str,
        procs: int,
        library: str = clientlib.DEFAULT_LIBRARY,
        endpoint: Endpoint | None = None,
    ) -> None:
        endpoint = endpoint or Endpoint()
        self.base_url = base_url.rstrip("/")
        self.procs = max(procs, 1)
        self.library = library
        self.fd_limit = raise_fd_limit()
        ctx = multiprocessing.get_context("spawn")
        self._results: Any = ctx.Queue()
        self._commands: list[Any] = [ctx.Queue() for _ in range(self.procs)]
        self._processes = [
            ctx.Process(
                target=client_main,
                args=(i, self.base_url, library, endpoint, self._commands[i], self._results),
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
        reports = self._gather("connected", timeout)
        total.histogram = encode_histogram(
            merge_histograms(r.histogram for r in reports if r.histogram)
        )
        for report in reports:
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
