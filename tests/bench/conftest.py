"""Fixtures of the bench tests: misbehaving broadcast servers on free loopback ports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from channels_scale.bench.scenarios import BenchConfig
from channels_scale.net import free_port, port_in_use, wait_until

HERE = Path(__file__).resolve().parent


@pytest.fixture
def misbehaving() -> Iterator[Callable[[str], str]]:
    """Start ``misbehave.py --mode MODE``; returns its ``ws://`` URL. Stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(mode: str) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "misbehave.py"), "--port", str(port), "--mode", mode]
        )
        procs.append(proc)
        if not wait_until(lambda: port_in_use("127.0.0.1", port), 15):
            pytest.fail(f"misbehave.py --mode {mode} did not listen on {port}")
        return f"ws://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def tiny(tmp_path: Path) -> Callable[..., BenchConfig]:
    """Make a config small enough for a test: 4 subscribers, 100 frames at 100/s, 1 process."""

    def make(scenario: str, **options: object) -> BenchConfig:
        base: dict[str, object] = {
            "subs": 4,
            "msgs": 100,
            "rate": 100.0,
            "procs": 1,
            "drain_s": 1.5,
            "out": tmp_path / "out",
        }
        base.update(options)
        return BenchConfig(scenario=scenario, **base)  # type: ignore[arg-type]

    return make
