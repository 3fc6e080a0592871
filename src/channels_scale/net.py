"""Small network helpers shared by the stack, the bench and the tests (no Django, no Redis)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

TIMEOUT_FACTOR_ENV = "CHANNELS_SCALE_TIMEOUT_FACTOR"


def timeout_factor() -> float:
    """Multiplier for every wait: ``CHANNELS_SCALE_TIMEOUT_FACTOR`` (default 1), slow machines."""
    try:
        return max(float(os.environ.get(TIMEOUT_FACTOR_ENV, "1")), 0.1)
    except ValueError:
        return 1.0


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True when binding ``host:port`` fails (someone listens there or it is reserved)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds (times the factor) pass."""
    deadline = time.monotonic() + timeout * timeout_factor()
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
