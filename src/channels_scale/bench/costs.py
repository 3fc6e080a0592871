"""Server-side cost meters: CPU and RSS from ``/proc``, Redis INFO deltas.

CPU is read from ``/proc/<pid>/stat`` (``utime + stime + cutime + cstime``: the process and its
waited-for children), for every server-side process of a stack and their live descendants, and
reported as the difference between two snapshots. A process that appears between the snapshots
counts from zero; one that vanished counts nothing after the first snapshot (its parent's
``cutime`` catches it when that parent is metered).

Processes are given a role from their command line, so the report can split costs: ``redis``
(``redis-server``), ``lb`` (nginx, HAProxy), ``supervisor`` and ``worker`` (everything else).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from channels_scale.bench.figures import ServerCosts, redis_command_deltas

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and its waited-for children (None: no such process)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` (None: no such process)."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` in bytes (None: no such process)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (``/proc/stat``)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0.0
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def with_descendants(pids: Iterable[int]) -> set[int]:
    """``pids`` plus every live process whose ancestry leads to one of them."""
    roots = set(pids)
    parent: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parent[int(entry.name)] = int(fields[1])
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return {pid for pid in found if pid in parent or pid in roots}


def role(pid: int) -> str:
    """``redis``, ``lb``, ``supervisor`` or ``worker``, from the process's command line."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "gone"
    cmd = raw.replace(b"\0", b" ").decode(errors="replace").lower()
    if "redis-server" in cmd:
        return "redis"
    if "nginx" in cmd or "haproxy" in cmd:
        return "lb"
    if "supervisord" in cmd:
        return "supervisor"
    return "worker"


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds per process at one moment, with each process's role."""

    seconds: dict[int, float]
    roles: dict[int, str]


def cpu_snapshot(pids: Iterable[int]) -> CpuSnapshot:
    """CPU seconds of ``pids`` and their descendants now."""
    seconds: dict[int, float] = {}
    roles: dict[int, str] = {}
    for pid in with_descendants(pids):
        value = cpu_seconds(pid)
        if value is not None:
            seconds[pid] = value
            roles[pid] = role(pid)
    return CpuSnapshot(seconds, roles)


def cpu_delta(before: CpuSnapshot, after: CpuSnapshot) -> tuple[float, dict[str, float]]:
    """Total CPU seconds spent between two snapshots, and the same split by role."""
    by_role: dict[str, float] = {}
    for key, spent in cpu_by_process(before, after).items():
        name = key.split(" ", 1)[0]
        by_role[name] = by_role.get(name, 0.0) + spent
    return sum(by_role.values()), by_role


def cpu_by_process(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds each process spent between two snapshots, keyed ``"role pid"``."""
    return {
        f"{after.roles.get(pid, 'worker')} {pid}": max(value - before.seconds.get(pid, 0.0), 0.0)
        for pid, value in after.seconds.items()
    }


def worker_rss(pids: Iterable[int]) -> dict[int, int]:
    """RSS in bytes of the worker processes among ``pids`` (and their descendants)."""
    found: dict[int, int] = {}
    for pid in with_descendants(pids):
        if role(pid) == "worker":
            value = rss_bytes(pid)
            if value is not None:
                found[pid] = value
    return found


@dataclass(frozen=True)
class RedisSnapshot:
    """``INFO commandstats`` and network byte counters of one Redis at one moment."""

    commandstats: dict[str, dict[str, Any]]
    bytes_in: int
    bytes_out: int


class RedisMeter:
    """Reads Redis INFO before and after a phase.

    The meter's own INFO calls are excluded from the command counts; their bytes (about 3 KB per
    phase) are not, which is noise next to a phase's thousands of 100-byte frames.
    """

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def snapshot(self) -> RedisSnapshot:
        stats = self._client.info("stats")
        commands = self._client.info("commandstats")
        return RedisSnapshot(
            {k: dict(v) for k, v in commands.items() if isinstance(v, dict)},
            int(stats.get("total_net_input_bytes", 0)),
            int(stats.get("total_net_output_bytes", 0)),
        )

    def close(self) -> None:
        self._client.close()


def node_address(url: str) -> str:
    """``host:port`` of a plain Redis URL (the key of a node's figures)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


def redis_node_of(pid: int) -> str | None:
    """``host:port`` a ``redis-server`` serves, from its process title (``redis-server
    127.0.0.1:6379``, ``... [cluster]`` for a cluster node); None for other processes."""
    try:
        title = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return None
    found = _REDIS_TITLE.search(title)
    return found.group(1) if found else None


_REDIS_TITLE = re.compile(r"redis-server\s+(\S+:\d+)")


class CostMeter:
    """Measures :class:`~channels_scale.bench.figures.ServerCosts` around a phase.

    ``pids`` are the stack's server-side processes (empty for ``--url`` targets: no CPU figure);
    ``redis_url`` the stack's Redis (``None``: no Redis figures); ``redis_nodes`` one plain URL
    per Redis node (shards, cluster masters) when there are several: each is metered on its own
    (``ServerCosts.redis_nodes``: CPU and command calls per node) and the Redis figures are
    their sums.
    """

    def __init__(
        self, pids: list[int], redis_url: str | None, redis_nodes: Sequence[str] = ()
    ) -> None:
        self.pids = pids
        urls = list(redis_nodes) or ([redis_url] if redis_url else [])
        self.redis = {node_address(url): RedisMeter(url) for url in urls}
        self._cpu: CpuSnapshot | None = None
        self._redis: dict[str, RedisSnapshot] = {}
        self._machine = 0.0
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._machine = machine_busy_seconds()
        self._cpu = cpu_snapshot(self.pids) if self.pids else None
        self._redis = {node: meter.snapshot() for node, meter in self.redis.items()}

    def stop(self) -> ServerCosts:
        costs = ServerCosts(
            machine_cpu_s=machine_busy_seconds() - self._machine,
            wall_s=time.monotonic() - self._started,
        )
        node_cpu: dict[str, float] = {}
        if self._cpu is not None:
            after_cpu = cpu_snapshot(self.pids)
            costs.cpu_s, costs.cpu_by_role = cpu_delta(self._cpu, after_cpu)
            costs.cpu_by_process = cpu_by_process(self._cpu, after_cpu)
            for pid, value in after_cpu.seconds.items():
                node = redis_node_of(pid) if after_cpu.roles.get(pid) == "redis" else None
                if node is not None:
                    spent = max(value - self._cpu.seconds.get(pid, 0.0), 0.0)
                    node_cpu[node] = node_cpu.get(node, 0.0) + spent
        if self._redis:
            costs.redis_commands, costs.redis_bytes_in, costs.redis_bytes_out = {}, 0, 0
            costs.redis_nodes = {}
            for node, meter in self.redis.items():
                before, after = self._redis[node], meter.snapshot()
                calls = redis_command_deltas(before.commandstats, after.commandstats)
                for name, count in calls.items():
                    costs.redis_commands[name] = costs.redis_commands.get(name, 0) + count
                costs.redis_bytes_in += after.bytes_in - before.bytes_in
                costs.redis_bytes_out += after.bytes_out - before.bytes_out
                costs.redis_nodes[node] = {
                    "cpu_s": node_cpu.get(node),
                    "commands": sum(calls.values()),
                    "by_command": calls,
                }
        return costs

    def close(self) -> None:
        for meter in self.redis.values():
            meter.close()
