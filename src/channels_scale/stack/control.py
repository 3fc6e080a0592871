"""A running stack seen from outside: its lock, supervisor's answers, and the one way to stop it.

Used by the ``up`` that started the stack and by ``status`` / ``down`` run later from another
shell. Everything here names processes exactly (:class:`ProcessId`, process groups the stack's
processes lead), never by what their command lines contain, so a log viewer, a wrapper such as
``timeout``, or a stack in a neighbouring run directory is never touched.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

from channels_scale.exceptions import ConfigError
from channels_scale.net import timeout_factor
from channels_scale.stack.options import RunLayout
from channels_scale.stack.processes import ProcessId, group_of

STOP_TIMEOUT_S = 30.0


def supervisor_call(layout: RunLayout, method: str, *args: Any) -> Any:
    """Call ``supervisor.METHOD`` on the supervisord of ``layout`` over its unix socket.

    Raises ``OSError`` (nothing listens) or ``xmlrpc.client.Error``.
    """
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{layout.supervisor_socket}")
    try:
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return getattr(proxy.supervisor, method)(*args)
    finally:
        transport.close()


def supervisor_processes(layout: RunLayout) -> list[dict[str, Any]] | None:
    """supervisord's view of its processes, or None when it does not answer."""
    try:
        return list(supervisor_call(layout, "getAllProcessInfo"))
    except (OSError, xmlrpc.client.Error):
        return None


class RunLock:
    """An exclusive ``flock`` on ``RUN_DIR/lock``: one stack per run directory.

    ``up`` takes it before touching anything in the run directory and hands the descriptor to
    supervisord, which keeps it for as long as it lives (supervisor closes inherited descriptors
    in the programs it spawns, so no worker holds it). A refused second ``up`` therefore knows,
    without guessing from process names, that the directory is in use, and leaves it alone.
    """

    def __init__(self, layout: RunLayout) -> None:
        self.path = layout.root / "lock"
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False (and nothing held) when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def held_elsewhere(self) -> bool:
        """True when some process (a running or starting stack) holds the lock now."""
        if not self.path.exists():
            return False
        if self.acquire():
            self.release()
            return False
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass(frozen=True)
class Member:
    """One process of a stack, as it was when the stop began."""

    name: str
    process: ProcessId


def recorded_supervisord(layout: RunLayout) -> ProcessId | None:
    """supervisord as ``up`` recorded it in ``stack.json``, if it or its session still lives."""
    try:
        state = json.loads(layout.state_file.read_text())
        found = ProcessId(int(state["supervisord"]["pid"]), int(state["supervisord"]["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if found.alive() or found.session() else None


def members(layout: RunLayout, supervisord: ProcessId) -> list[Member]:
    """supervisord and every live process of its session, named as supervisor reports them."""
    reported = supervisor_processes(layout) or []
    names = {int(p["pid"]): str(p["name"]) for p in reported if p.get("pid")}
    found = [Member("supervisord", supervisord)] if supervisord.alive() else []
    for process in supervisord.session():
        if process == supervisord:
            continue
        # Not a program supervisor reports: a child in a program's process group (an nginx
        # worker: "lb/child"), or something left behind when supervisord no longer answers.
        leader = names.get(group_of(process.pid) or 0)
        found.append(
            Member(names.get(process.pid) or (f"{leader}/child" if leader else "left"), process)
        )
    # supervisord, then its programs and their children by name (lb, lb/child, redis, worker-0).
    return sorted(found, key=lambda m: (m.name != "supervisord", m.name))


def stop(layout: RunLayout, supervisord: ProcessId) -> list[Member]:
    """Stop the stack whose supervisord is ``supervisord``; the processes that were running.

    supervisord gets SIGTERM and stops its programs in reverse priority order (the load balancer
    first, Redis last), each with its own stop signal and timeout. When it is done, or after
    :data:`STOP_TIMEOUT_S`, whatever is left of its session — supervisord, programs it left
    behind, their children — gets SIGKILL. Nothing outside that session is signalled.
    """
    running = members(layout, supervisord)
    supervisord.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S * timeout_factor()
    while supervisord.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    supervisord.signal(signal.SIGKILL)
    for process in supervisord.session():
        process.signal(signal.SIGKILL)
    return running


def describe(stopped: list[Member]) -> str:
    return ", ".join(f"{m.name} (pid {m.process.pid})" for m in stopped) or "nothing"


def stop_running(layout: RunLayout) -> list[Member]:
    """``channels-scale down``: stop the stack running in ``layout`` from another process.

    supervisord is found through its socket, or — when it no longer answers — through the
    identity ``up`` recorded in ``stack.json``. Raises :class:`ConfigError` when none runs there.
    """
    try:
        supervisord = ProcessId.of(int(supervisor_call(layout, "getPID")))
    except (OSError, xmlrpc.client.Error):
        supervisord = recorded_supervisord(layout)
    if supervisord is None:
        raise ConfigError(f"no stack is running in {layout.root}: pass the --run-dir given to up")
    return stop(layout, supervisord)
