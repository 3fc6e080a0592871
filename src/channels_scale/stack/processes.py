"""Find processes through ``/proc``: a stack's leftovers and a process' children (Linux only)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for child in all_pids():
        parent = _ppid(child)
        if parent is not None:
            parents.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (a run directory), and their children."""
    me = os.getpid()
    direct = [pid for pid in all_pids() if pid != me and text in _cmdline(pid)]
    found = set(direct)
    for pid in direct:
        found.update(children_of(pid))
    found.discard(me)
    return sorted(found)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
