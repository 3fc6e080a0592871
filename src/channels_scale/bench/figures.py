"""The figures a bench run reports, computed from raw counters (pure: no I/O, no clock).

Every figure is defined here once; the report only formats them.

Latency histograms are HdrHistograms of microseconds (1 µs .. 10 min, 3 significant digits), one
per client process, merged by adding counts (exact: merging loses nothing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from channels_scale.bench.frames import DeliveryCounts

LATENCY_MAX_US = 600_000_000
"""Highest latency a histogram records (10 minutes); larger values are clamped to it."""

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9, 99.99, 100.0)
"""Percentiles reported for every latency distribution (100 = max)."""

MIN_SAMPLE_FRAMES = 100
"""Fewer frames published in a phase flags it as a small sample: with N frames, p99 is the
latency of the slowest one or two frames (every subscriber sees each frame at about the same
time, so the deliveries are not independent samples)."""


def new_histogram() -> HdrHistogram:
    """An empty latency histogram (microseconds, 3 significant digits)."""
    return HdrHistogram(1, LATENCY_MAX_US, 3)


def histogram_of(values_us: Iterable[int]) -> HdrHistogram:
    """A histogram of latencies in microseconds; values below 1 µs count as 1, above max clamp."""
    hist = new_histogram()
    for value in values_us:
        hist.record_value(min(max(value, 1), LATENCY_MAX_US))
    return hist


def encode_histogram(hist: HdrHistogram) -> bytes:
    """Compressed HdrHistogram encoding (what client processes send to the parent)."""
    return bytes(hist.encode())


def merge_histograms(encoded: Iterable[bytes]) -> HdrHistogram:
    """Decode and add histograms from several processes into one."""
    total = new_histogram()
    for blob in encoded:
        total.add(HdrHistogram.decode(blob))
    return total


@dataclass
class LatencySummary:
    """Latency percentiles in milliseconds, from scheduled send time to receipt.

    ``count`` is the number of latencies recorded (one per frame received, duplicates included);
    ``percentiles_ms`` maps the percentile as text (``"50"``, ``"99.9"``, ``"100"``) to ms.
    """

    count: int
    mean_ms: float
    percentiles_ms: dict[str, float]

    def at(self, percentile: float) -> float:
        """The latency at ``percentile`` in ms (NaN when nothing was recorded)."""
        return self.percentiles_ms.get(_pkey(percentile), math.nan)


def _pkey(percentile: float) -> str:
    return f"{percentile:g}"


def latency_summary(hist: HdrHistogram) -> LatencySummary:
    """Summarise a histogram of microseconds as milliseconds at :data:`PERCENTILES`."""
    count = int(hist.get_total_count())
    if count == 0:
        return LatencySummary(0, math.nan, {_pkey(p): math.nan for p in PERCENTILES})
    values = {
        _pkey(p): (hist.get_max_value() if p >= 100 else hist.get_value_at_percentile(p)) / 1000.0
        for p in PERCENTILES
    }
    return LatencySummary(count, float(hist.get_mean_value()) / 1000.0, values)


@dataclass
class ClientCpu:
    """CPU used by one client process during a phase.

    ``utilization`` is CPU seconds over wall seconds (1.0 = one core busy the whole phase); a
    value near 1.0 means the client process, not the server, may be the bottleneck.
    """

    cpu_s: float
    wall_s: float

    @property
    def utilization(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


SATURATED_CLIENT = 0.9
"""Client utilization from which a client process is flagged as saturated."""


@dataclass
class ServerCosts:
    """Server-side cost deltas over a phase (absent figures are ``None``).

    ``cpu_s``: CPU seconds (user + system, children included) of every server-side process:
    workers, Redis, load balancer. ``redis_commands``: Redis command calls by name (INFO itself
    excluded). ``redis_bytes_in``/``redis_bytes_out``: network bytes Redis read and wrote.
    ``machine_cpu_s``: CPU seconds every process of the machine spent (to see other load on a
    shared machine); ``wall_s``: seconds between the two readings. ``cpu_by_process``: the same
    CPU seconds per process, keyed ``"role pid"`` (``worker 1234``), so a report can tell one
    process at 100% of a core from several at half (:func:`busiest_by_role`).
    """

    cpu_s: float | None = None
    machine_cpu_s: float | None = None
    wall_s: float | None = None
    cpu_by_role: dict[str, float] = field(default_factory=dict)
    cpu_by_process: dict[str, float] = field(default_factory=dict)
    redis_commands: dict[str, int] | None = None
    redis_bytes_in: int | None = None
    redis_bytes_out: int | None = None
    #: per Redis node (``host:port``): ``cpu_s``, ``commands`` (calls) and ``by_command``
    redis_nodes: dict[str, dict[str, Any]] | None = None


def busiest_by_role(cpu_by_process: dict[str, float], seconds: float) -> dict[str, float]:
    """Per role, the busiest process's CPU as a share of one core over ``seconds`` (pure).

    A saturated stack shows here which process is the bound: a share near 1.0 is a process with
    no CPU left, whatever the average of its role. Empty when ``seconds`` is not positive.
    """
    found: dict[str, float] = {}
    if seconds <= 0:
        return found
    for key, spent in cpu_by_process.items():
        name = key.split(" ", 1)[0]
        found[name] = max(found.get(name, 0.0), spent / seconds)
    return found


def redis_node_figures(figures: PhaseFigures) -> list[dict[str, Any]]:
    """Per Redis node of a phase: CPU ms per 1,000 deliveries and per second of the phase, and
    command calls per frame published (pure). Empty when the nodes were not metered."""
    costs = figures.costs
    rows = []
    for node, spent in sorted((costs.redis_nodes or {}).items()):
        cpu = spent.get("cpu_s")
        rows.append(
            {
                "node": node,
                "cpu_s": cpu,
                "cpu_ms_per_1k": per_unit(cpu, figures.deliveries, 1e6),
                "cpu_share": per_unit(cpu, costs.wall_s or 0.0),
                "commands": spent.get("commands"),
                "commands_per_frame": per_unit(spent.get("commands"), figures.sent),
            }
        )
    return rows


@dataclass
class PhaseFigures:
    """Every figure of one load phase against one stack.

    Rates: ``offered_frames_per_s`` is what the publishers were scheduled to send in total;
    ``offered_deliveries_per_s`` the deliveries that implies (frames times room audience);
    ``deliveries_per_s`` the unique deliveries received divided by the phase window (first
    scheduled send to last receipt, at least the scheduled duration).

    Loss: ``expected`` deliveries owed for the frames really sent, ``deliveries`` those received
    at least once, ``lost`` the difference (frames never received within the drain window count
    as lost), ``duplicated``/``reordered`` as in :mod:`channels_scale.bench.frames`.

    Costs per unit: ``server_cpu_ms_per_1k`` is server CPU milliseconds per 1,000 deliveries
    received; ``redis_commands_per_frame`` and ``redis_bytes_*_per_frame`` are per frame
    published; ``client_cpu_ms_per_1k`` is load-generator CPU per 1,000 deliveries.

    ``small_sample``: fewer than :data:`MIN_SAMPLE_FRAMES` frames were published, so the
    percentiles are nearly single frames' latencies.

    ``other_load`` is the CPU (in cores, averaged over the phase) that neither the server-side
    processes nor the load generator used: other work on a shared machine that may have
    disturbed the figures (``None`` when the server's CPU is not known, as for ``--url``).
    """

    offered_frames_per_s: float
    offered_deliveries_per_s: float
    window_s: float
    sent: int
    expected: int
    deliveries: int
    received: int
    lost: int
    loss_ratio: float
    duplicated: int
    reordered: int
    unexpected: int
    stale: int
    deliveries_per_s: float
    latency: LatencySummary
    max_send_lag_ms: float
    clients: list[ClientCpu]
    client_cpu_ms_per_1k: float | None
    client_saturated: bool
    connection_errors: int
    errors: list[str]
    costs: ServerCosts
    server_cpu_ms_per_1k: float | None
    redis_commands_per_frame: float | None
    redis_bytes_in_per_frame: float | None
    redis_bytes_out_per_frame: float | None
    other_load: float | None
    #: the load balancer's own CPU (role ``lb``: nginx, HAProxy) per 1,000 deliveries
    lb_cpu_ms_per_1k: float | None = None
    small_sample: bool = False

    def held(self, bound_ms: float) -> bool:
        """True when nothing was lost and p99 latency stayed within ``bound_ms``."""
        p99 = self.latency.at(99.0)
        return self.lost == 0 and self.deliveries > 0 and not math.isnan(p99) and p99 <= bound_ms

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["clients"] = [
            {**asdict(c), "utilization": round(c.utilization, 4)} for c in self.clients
        ]
        result: dict[str, Any] = _finite(data)
        return result


def _finite(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by ``None``, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def per_unit(amount: float | None, units: float, scale: float = 1.0) -> float | None:
    """``amount * scale / units``, or ``None`` when either is unknown or ``units`` is zero."""
    if amount is None or units <= 0:
        return None
    return amount * scale / units


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or ``None`` when either is unknown, NaN or the baseline is zero."""
    if value is None or baseline is None:
        return None
    if math.isnan(value) or math.isnan(baseline) or baseline == 0:
        return None
    return value / baseline


def delivery_figures(
    *,
    counts: DeliveryCounts,
    latency: LatencySummary,
    offered_frames_per_s: float,
    offered_deliveries_per_s: float,
    scheduled_s: float,
    first_scheduled_us: int | None,
    last_receipt_us: int | None,
    max_send_lag_us: int,
    clients: Sequence[ClientCpu],
    connection_errors: int,
    errors: Sequence[str],
    costs: ServerCosts,
) -> PhaseFigures:
    """Build the figures of a phase from merged counters (see :class:`PhaseFigures`)."""
    window = scheduled_s
    if first_scheduled_us is not None and last_receipt_us is not None:
        window = max(window, (last_receipt_us - first_scheduled_us) / 1e6)
    deliveries = counts.unique
    expected = counts.expected
    lost = counts.lost
    sent = counts.sent
    client_cpu = sum(c.cpu_s for c in clients)
    redis_calls = sum(costs.redis_commands.values()) if costs.redis_commands is not None else None
    return PhaseFigures(
        offered_frames_per_s=offered_frames_per_s,
        offered_deliveries_per_s=offered_deliveries_per_s,
        window_s=window,
        sent=sent,
        expected=expected,
        deliveries=deliveries,
        received=counts.received,
        lost=lost,
        loss_ratio=lost / expected if expected else 0.0,
        duplicated=counts.duplicated,
        reordered=counts.reordered,
        unexpected=counts.unexpected,
        stale=counts.stale,
        deliveries_per_s=deliveries / window if window > 0 else 0.0,
        latency=latency,
        max_send_lag_ms=max_send_lag_us / 1000.0,
        clients=list(clients),
        client_cpu_ms_per_1k=per_unit(client_cpu, counts.received, 1e6),
        client_saturated=any(c.utilization >= SATURATED_CLIENT for c in clients),
        connection_errors=connection_errors,
        errors=list(errors)[:10],
        costs=costs,
        server_cpu_ms_per_1k=per_unit(costs.cpu_s, deliveries, 1e6),
        redis_commands_per_frame=per_unit(redis_calls, sent),
        redis_bytes_in_per_frame=per_unit(costs.redis_bytes_in, sent),
        redis_bytes_out_per_frame=per_unit(costs.redis_bytes_out, sent),
        other_load=_other_load(costs, client_cpu),
        lb_cpu_ms_per_1k=per_unit(costs.cpu_by_role.get("lb"), deliveries, 1e6),
        small_sample=offered_frames_per_s > 0 and sent < MIN_SAMPLE_FRAMES,
    )


def _other_load(costs: ServerCosts, client_cpu: float) -> float | None:
    if costs.cpu_s is None or costs.machine_cpu_s is None or not costs.wall_s:
        return None
    return max(costs.machine_cpu_s - costs.cpu_s - client_cpu, 0.0) / costs.wall_s


def redis_command_deltas(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> dict[str, int]:
    """Calls per command between two ``INFO commandstats`` answers (``cmdstat_info`` excluded)."""
    deltas: dict[str, int] = {}
    for key, stats in after.items():
        name = key.removeprefix("cmdstat_")
        if name == "info":
            continue
        calls = int(stats.get("calls", 0)) - int(before.get(key, {}).get("calls", 0))
        if calls > 0:
            deltas[name] = calls
    return deltas


def saturation_point(steps: Sequence[tuple[float, PhaseFigures]], bound_ms: float) -> float | None:
    """The highest offered rate (frames/s) held under ``bound_ms`` before the first failed step.

    A step is held when it lost nothing and its p99 stayed within the bound
    (:meth:`PhaseFigures.held`); steps after the first failure do not count.
    """
    best: float | None = None
    for rate, figures in sorted(steps, key=lambda s: s[0]):
        if not figures.held(bound_ms):
            break
        best = rate
    return best
