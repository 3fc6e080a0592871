"""The fault suite's stack, shared by its cases: ``up --workers 2`` behind nginx, our Redis.

Redis is started by the suite (``up --redis``), with an append-only file synced on every write, so
that "Redis stopped and restarted" keeps the history and "restarted without persistence" is a
separate, deliberate case. The figures of every case are printed at the end of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from channels_scale.net import free_port
from tests.conftest import EXAMPLE, ROOT, RedisProcess, example_environment
from tests.faults.figures import FIGURES, figures_table
from tests.stackrunner import RunningStack

PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")


@dataclass
class FaultStack:
    """The running stack, its Redis and where its files are."""

    stack: RunningStack
    redis: RedisProcess
    base: Path
    restarts: list[RedisProcess] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.stack.ws_url

    @property
    def run_dir(self) -> Path:
        return self.stack.run_dir.resolve()


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    base = tmp_path_factory.mktemp("faults")
    (base / "redis").mkdir()
    redis = RedisProcess(base / "redis", extra_args=PERSISTENT)
    redis.start()
    args = [
        "--workers", "2", "--lb", "nginx", "--redis", redis.url,
        "--app", "tests.faults.stackapp:application", "--settings", "tests.faults.stacksettings",
        "--pythonpath", str(ROOT), "--pythonpath", str(EXAMPLE),
    ]  # fmt: skip
    stack = RunningStack(args, example_environment(base), base / "run", free_port())
    faults = FaultStack(stack, redis, base)
    try:
        stack.wait_up()
        yield faults
    finally:
        stack.stop()
        faults.redis.stop(kill=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "fault suite figures")
        terminalreporter.write_line(figures_table(FIGURES))
