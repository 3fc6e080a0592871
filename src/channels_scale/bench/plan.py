"""What the parent tells client processes and what they report back (picklable data, no I/O).

A run is a list of :class:`ConnSpec` (connections to open) and then one :class:`PhaseSpec` per
measured phase; each client process answers a connect step with a :class:`ConnectReport` and a
phase with a :class:`PhaseReport`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from channels_scale.bench.figures import ClientCpu
from channels_scale.bench.frames import DeliveryCounts

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
    common start on the monotonic clock; frame ``k`` of a publisher is scheduled at
    ``start_at_us + offset_us(publisher) + k / rate`` seconds. ``hold_s`` keeps a phase with no
    publishers open that long (the idle scenario).
    """

    phase: int
    publishers: dict[int, str]
    rate: float
    msgs: int
    start_at_us: int
    drain_s: float
    hold_s: float = 0.0
    churn: ChurnSpec | None = None

    def offset_us(self, conn_id: int) -> int:
        """When publisher ``conn_id`` starts, after ``start_at_us``.

        Publishers are spread evenly over one send interval, so many publishers at the same rate
        (the rooms scenario) offer a steady load rather than synchronised bursts.
        """
        if len(self.publishers) < 2 or self.rate <= 0:
            return 0
        rank = sorted(self.publishers).index(conn_id)
        return round(rank * 1e6 / self.rate / len(self.publishers))

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
    histogram: bytes = b""
    """Handshake latencies (encoded HdrHistogram, µs): from the attempt to the open websocket."""


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
