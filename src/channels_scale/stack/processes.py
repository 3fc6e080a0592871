"""Exact process identities through ``/proc`` (Linux only): never a match on command lines.

A pid alone is not an identity: after a process exits, the kernel may hand its number to another
one. :class:`ProcessId` pairs the pid with the process' start time (field 22 of
``/proc/PID/stat``, in clock ticks since boot), so a stop never signals a stranger that reused the
number. The processes of a stack are found through the session its supervisord leads (started
with ``start_new_session``; supervisor's programs stay in it), never through their arguments.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (state first), or None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()


@dataclass(frozen=True)
class ProcessId:
    """One process: its pid and its start time, which together never name another process."""

    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        """The identity of the live process ``pid`` now, or None when there is none."""
        fields = _stat_fields(pid)
        if fields is None or fields[0] == "Z":
            return None
        return cls(pid, int(fields[19]))

    def alive(self) -> bool:
        """True while this very process runs (a zombie or a reused pid counts as gone)."""
        return ProcessId.of(self.pid) == self

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def session(self) -> list[ProcessId]:
        """The live processes of the session this process leads (its sid is this pid).

        ``up`` starts supervisord in a session of its own; every program supervisor spawns (and
        their children) stays in it, even after supervisord itself died and left them behind.
        The kernel does not reuse the number while a member holds it as its session id; when
        the number names another process now, the session is not ours any more: empty.
        """
        current = ProcessId.of(self.pid)
        if current is not None and current != self:
            return []
        found = []
        for pid in all_pids():
            fields = _stat_fields(pid)
            if fields is not None and fields[0] != "Z" and int(fields[3]) == self.pid:
                member = ProcessId.of(pid)
                if member is not None:
                    found.append(member)
        return found


def group_of(pid: int) -> int | None:
    """The process group of ``pid`` (None: gone)."""
    fields = _stat_fields(pid)
    return int(fields[2]) if fields is not None else None


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for child in all_pids():
        parent = parent_of(child)
        if parent is not None:
            parents.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_children(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """Stop child processes we started: SIGTERM to all first, then wait; SIGKILL a laggard.

    Our own ``Popen`` objects, so the pid cannot have been reused while we hold them unwaited.
    """
    started = list(procs)
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
    for proc in started:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
