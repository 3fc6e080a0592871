"""``up`` is ready only when the user's app serves, and says why not (exit 2, nothing left).

Each case runs the real stack (supervisor, nginx, uvicorn, redis-server) on the small project in
``checks_project``, broken in one way chosen by its environment.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from channels_scale.net import free_port, port_in_use, timeout_factor
from tests.stack.stackclients import CHECKS, project_env, something_listens
from tests.stackrunner import CLI, RunningStack

pytestmark = pytest.mark.e2e
APP = ["--app", "checks.asgi:application", "--pythonpath", str(CHECKS), "--workers", "1"]


def _up_fails(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    """Run ``up``; assert exit 2, one line, nothing left running; the line."""
    port, run_dir = free_port(), tmp_path / "run"
    proc = subprocess.Popen(
        [CLI, "up", *APP, "--port", str(port), "--run-dir", str(run_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=120 * timeout_factor())
    except subprocess.TimeoutExpired:
        proc.terminate()  # `up` came up after all: SIGTERM stops its stack
        stdout, stderr = proc.communicate()
        pytest.fail("up did not fail:\n" + stdout + stderr)
    assert proc.returncode == 2, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert not port_in_use("127.0.0.1", port)
    assert not something_listens(run_dir.resolve() / "supervisor.sock")
    return lines[0]


def test_missing_migrations_are_named(tmp_path: Path) -> None:
    line = _up_fails(tmp_path, project_env(CHECKS_DB=str(tmp_path / "db.sqlite3")))
    # the default --lb direct: the workers themselves answer on --port
    assert "GET / through the workers" in line and "HTTP 500" in line, line
    assert "no such table: auth_user" in line and "manage.py migrate" in line, line


def test_host_outside_allowed_hosts_is_named_even_without_debug(tmp_path: Path) -> None:
    env = project_env(CHECKS_DEBUG="0", CHECKS_ALLOWED_HOSTS="example.com")
    line = _up_fails(tmp_path, env, "--ready-path", "/ok/")
    assert "HTTP 400" in line and "ALLOWED_HOSTS" in line and "127.0.0.1" in line, line


def test_websocket_path_must_complete_a_handshake(tmp_path: Path) -> None:
    line = _up_fails(tmp_path, project_env(), "--ready-path", "/ok/", "--ready-ws-path", "/ws/no/")
    # Channels' URLRouter raises for an unknown path (HTTP 500): the worker's error is quoted.
    assert "handshake on /ws/no/ answered HTTP 500" in line, line
    assert "No route found for path 'ws/no/'" in line and "URLRouter" in line, line


def test_kept_channel_layer_that_does_not_answer_fails(tmp_path: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    env = project_env(CHECKS_REDIS_URL=nowhere)
    line = _up_fails(tmp_path, env, "--ready-path", "/ok/", "--keep-channel-layers")
    assert "worker-0 is not ready: channel layer" in line, line
    assert nowhere in line and "--keep-channel-layers" in line, line


def test_kept_channel_layer_elsewhere_is_reported_and_checked(
    tmp_path: Path, redis_server: Any
) -> None:
    env = project_env(CHECKS_REDIS_URL=redis_server.url)
    stack = RunningStack(
        [*APP, "--ready-path", "/ok/", "--ready-ws-path", "/ws/room/lobby/",
         "--keep-channel-layers"],
        env, tmp_path / "run", free_port(),
    )  # fmt: skip
    try:
        stack.wait_up()
        output = "".join(stack.output)
        assert f"kept: channels_scale.layer.RedisChannelLayer on {redis_server.url}" in output
        assert "(NOT the stack's Redis" in output, output
        assert "it answers a send + receive in every worker" in output, output
    finally:
        assert stack.stop() == 0


def test_app_that_forces_its_settings_is_not_up_on_another_redis(
    tmp_path: Path, redis_server: Any
) -> None:
    # The project's layer answers (a real Redis), but it is not the stack's: never "up" silently.
    env = project_env(CHECKS_REDIS_URL=redis_server.url)
    line = _up_fails(
        tmp_path, env, "--app", "checks.asgi_forced:application", "--ready-path", "/ok/"
    )
    assert f"on {redis_server.url}, not the stack's Redis" in line, line
    assert "sets DJANGO_SETTINGS_MODULE itself" in line, line
