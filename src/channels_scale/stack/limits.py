"""Open files each process of a stack needs for the websockets it is sized for (pure: no I/O).

A websocket costs one file descriptor in the ASGI worker that holds it and two in a proxying load
balancer (the client's socket and the worker-side socket). A process cannot raise its own limit
past the hard ``RLIMIT_NOFILE`` it inherited (without ``CAP_SYS_RESOURCE``), so the stack sizes
each program from that limit and ``--max-connections``:

- supervisord: ``minfds`` = the limit, so every program it starts inherits it as its soft limit;
- nginx: ``worker_rlimit_nofile`` = the limit, ``worker_connections`` = the limit less a reserve,
  and as many worker processes as it takes for twice max-connections (at least one per core), with
  ``reuseport`` so the kernel spreads new connections evenly over them;
- HAProxy: one process, so ``maxconn`` = half the usable limit; past it ``up`` refuses;
- uvicorn: ``--backlog 4096`` (the kernel caps it at ``net.core.somaxconn``) and no
  ``--limit-concurrency`` (it would refuse websockets over it with HTTP 503), so each
  worker must be able to hold its share of max-connections: ``up`` refuses when it cannot.

Without ``--max-connections`` nothing is refused and nginx runs one worker per core: what a
process can hold is then simply what its limit allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RESERVED_FDS = 256
"""Descriptors of a process not used by websockets: listening sockets, logs, Redis, imports."""

HEADROOM = 1.25
"""Connections are not spread perfectly evenly over processes (least-connections balancing across
several nginx workers, each with its own view): size each process for a quarter more."""


def open_files_for(connections: int | None, soft: int, hard: int) -> int:
    """Open files per process for ``connections`` websockets, given the inherited limits.

    Enough for one process to hold both sides of every connection, within the hard limit; never
    below the soft limit. Not simply the hard limit: nginx allocates its connection structures
    for all of ``worker_connections`` up front (a hard limit of 524,288, systemd's default, would
    cost each nginx worker some 250 MB).
    """
    if connections is None:
        return soft
    return min(hard, max(soft, math.ceil(2 * connections * HEADROOM) + RESERVED_FDS))


@dataclass(frozen=True)
class Limits:
    """``connections`` websockets on a machine where each process may open ``open_files``.

    ``connections`` None: not sized (``--max-connections`` not given).
    """

    connections: int | None
    open_files: int

    @property
    def usable(self) -> int:
        """Descriptors per process left for connections."""
        return max(self.open_files - RESERVED_FDS, 64)

    def nginx_workers(self, cores: int) -> int:
        """nginx worker processes: one per core, more when the descriptors of one run out."""
        if self.connections is None:
            return max(cores, 1)
        return max(cores, math.ceil(2 * self.connections * HEADROOM / self.usable), 1)

    @property
    def nginx_worker_connections(self) -> int:
        """``worker_connections``: both sides of every proxied websocket count."""
        return max(self.usable, 1024)

    @property
    def haproxy_maxconn(self) -> int:
        """``maxconn``: HAProxy sets its own descriptor limit to about twice this."""
        return max(self.usable // 2, 512)

    def per_worker(self, workers: int) -> int:
        """Descriptors one ASGI worker needs for its share of the connections."""
        share = math.ceil((self.connections or 0) * HEADROOM / max(workers, 1))
        return share + RESERVED_FDS

    def problems(self, lb: str, workers: int) -> list[str]:
        """Why this stack cannot hold ``connections`` websockets, one line each with the fix."""
        if self.connections is None:
            return []
        found = []
        if self.per_worker(workers) > self.open_files:
            found.append(
                f"--max-connections {self.connections:,} over {workers} worker(s) needs "
                f"{self.per_worker(workers):,} open files per worker but the limit is "
                f"{self.open_files:,}: add --workers, or raise the hard limit (ulimit -Hn, "
                "systemd LimitNOFILE=)"
            )
        if lb == "haproxy" and self.connections > self.haproxy_maxconn:
            found.append(
                f"--max-connections {self.connections:,} through HAProxy (one process) needs "
                f"{2 * self.connections + RESERVED_FDS:,} open files but the limit is "
                f"{self.open_files:,}: raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) "
                "or use --lb nginx (several worker processes)"
            )
        return found
