"""Fixtures for the sync publish tests: our layer in the Django settings on a real Redis, and a
receiving process."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from channels_scale import publisher
from tests.conftest import scaled
from tests.publish.receiver import HISTORY

ROOT = Path(__file__).resolve().parent.parent.parent


def layer_settings(url: str, prefix: str, **options: Any) -> dict[str, Any]:
    config = {"hosts": [url], "prefix": prefix, "history": HISTORY, **options}
    return {"default": {"BACKEND": "channels_scale.layer.RedisChannelLayer", "CONFIG": config}}


@pytest.fixture
def prefix() -> str:
    return "p" + uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def stop_publisher() -> Iterator[None]:
    """Each test starts from no publisher thread and leaves none behind (its layer instance, made
    from this test's settings, is closed with the thread's loop)."""
    publisher.shutdown()
    yield
    publisher.shutdown()


@pytest.fixture
def redis_layer(settings: Any, shared_redis: Any, prefix: str) -> None:
    """Our layer on the shared Redis under a fresh prefix (Channels drops its cached layer)."""
    settings.CHANNEL_LAYERS = layer_settings(shared_redis.url, prefix)


class Receiver:
    """``tests.publish.receiver`` in its own OS process; its lines are read by a thread."""

    def __init__(self, url: str, prefix: str, group: str, count: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.publish.receiver", url, prefix, group, str(count)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        assert self.line(20) == "ready"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # EOF

    def line(self, within: float = 20) -> str:
        try:
            return self.lines.get(timeout=scaled(within))
        except queue.Empty:
            pytest.fail(f"the receiver printed nothing within {within} s")

    def messages(self, within: float = 30) -> list[dict[str, Any]]:
        """Every message until ``done`` (fails on ``timeout`` or an early exit)."""
        got: list[dict[str, Any]] = []
        while (line := self.line(within)) != "done":
            assert line and line != "timeout", f"receiver ended after {len(got)} messages"
            got.append(json.loads(line))
        return got

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.reader.join(scaled(5))  # it ends at EOF; then the pipe can be closed
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def receiver(shared_redis: Any, prefix: str) -> Iterator[Callable[[str, int], Receiver]]:
    """Start receivers on the shared Redis under this test's prefix: ``receiver(group, count)``."""
    started: list[Receiver] = []

    def start(group: str, count: int) -> Receiver:
        started.append(Receiver(shared_redis.url, prefix, group, count))
        return started[-1]

    yield start
    for one in started:
        one.stop()
