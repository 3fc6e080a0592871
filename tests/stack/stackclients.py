"""Helpers shared by the stack tests of the app checks (tutorial project, readiness, restart)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from channels_scale.stack.health import worker_health

HERE = Path(__file__).resolve().parent
TUTORIAL = HERE / "tutorial_project"
CHECKS = HERE / "checks_project"


def project_env(**extra: str) -> dict[str, str]:
    """The test's environment without the example's settings (the project brings its own)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(extra)
    return env


def open_websockets(run_dir: Path, workers: int) -> list[int]:
    """Each worker's open websockets, from its ``/healthz`` (-1: no answer)."""
    counts = []
    for worker in range(workers):
        health = worker_health(run_dir.resolve() / "sockets" / f"worker-{worker}.sock")
        counts.append(int(health["websockets"]) if health else -1)
    return counts


def something_listens(unix_socket: Path) -> bool:
    """Whether a process accepts connections on ``unix_socket`` (e.g. supervisord's)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(unix_socket))
        except OSError:
            return False
    return True
