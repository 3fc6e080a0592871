"""Run the real ``channels-scale`` command as a subprocess (stack tests, browser tests)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from channels_scale.net import timeout_factor

CLI = str(Path(sys.executable).parent / "channels-scale")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=env, timeout=timeout * timeout_factor(),
        check=False,
    )  # fmt: skip


class RunningStack:
    """``channels-scale up`` in the background; ``url`` once it printed that it is up."""

    def __init__(self, args: list[str], env: dict[str, str], run_dir: Path, port: int) -> None:
        self.run_dir = run_dir
        self.port = port
        self.output: list[str] = []
        self._up = threading.Event()
        self.proc = subprocess.Popen(
            [CLI, "up", "--port", str(port), "--run-dir", str(run_dir), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if "channels-scale is up:" in line:
                self._up.set()

    def wait_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout * timeout_factor()
        while not self._up.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("channels-scale up did not come up:\n" + "".join(self.output))

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=60 * timeout_factor())
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code
