"""Run the real ``channels-scale`` command as a subprocess (stack tests, browser tests)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from channels_scale.net import timeout_factor
from channels_scale.stack import control
from channels_scale.stack.options import RunLayout
from channels_scale.stack.processes import ProcessId

CLI = str(Path(sys.executable).parent / "channels-scale")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=env, timeout=timeout * timeout_factor(),
        check=False, cwd=cwd,
    )  # fmt: skip


def stack_members(run_dir: Path) -> list[ProcessId]:
    """supervisord and every program of the stack in ``run_dir``, identified exactly (now)."""
    layout = RunLayout.of(run_dir)
    pid = int(control.supervisor_call(layout, "getPID"))
    found = [ProcessId.of(pid)]
    found += [ProcessId.of(int(p["pid"])) for p in control.supervisor_processes(layout) or []]
    assert all(found), f"a process of the stack in {run_dir} is gone already"
    return [p for p in found if p is not None]


def all_gone(members: list[ProcessId]) -> bool:
    return not any(m.alive() for m in members)


class RunningStack:
    """``channels-scale up`` in the background; ``url`` once it printed that it is up."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        run_dir: Path,
        port: int,
        wrapper: tuple[str, ...] = (),
    ) -> None:
        self.run_dir = run_dir
        self.port = port
        self.output: list[str] = []
        self._up = threading.Event()
        self.proc = subprocess.Popen(
            [*wrapper, CLI, "up", "--port", str(port), "--run-dir", str(run_dir), *args],
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


TUTORIAL_SETTINGS = """
SECRET_KEY = {secret!r}
INSTALLED_APPS = ["channels"]
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
DATABASES = {{}}
"""


def tutorial_project(root: Path, secret: str = "a-project-key", settings_tail: str = "") -> Path:
    """A Channels-tutorial-shaped project ``mysite`` in ``root`` (asgi.py, wsgi.py, settings)."""
    site = root / "mysite"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    (site / "urls.py").write_text("urlpatterns = []\n")
    (site / "settings.py").write_text(TUTORIAL_SETTINGS.format(secret=secret) + settings_tail)
    boot = 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n'
    (site / "asgi.py").write_text(
        boot + "from django.core.asgi import get_asgi_application\n"
        "application = get_asgi_application()\n"
    )
    (site / "wsgi.py").write_text(
        boot + "from django.core.wsgi import get_wsgi_application\n"
        "application = get_wsgi_application()\n"
    )
    return root
