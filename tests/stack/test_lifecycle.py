"""A stack touches only its own processes; ``up --detach``/``down``/``status``; signals; secrets.

Every test runs real processes (supervisor, nginx, uvicorn/daphne, redis-server) and checks that
bystanders — a log viewer, a process whose arguments name the run dir, a stack in a run dir whose
name extends another's, a wrapper such as ``timeout`` — are still alive afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from channels_scale.net import free_port, port_in_use, timeout_factor, wait_until
from channels_scale.stack.health import http_status
from tests.stackrunner import RunningStack, all_gone, run_cli, stack_members, tutorial_project

pytestmark = pytest.mark.e2e


@pytest.fixture
def bystanders() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def test_stop_and_refused_ups_leave_everything_else_alone(
    start_stack: Any,
    tmp_path: Path,
    example_env: dict[str, str],
    bystanders: list[subprocess.Popen[bytes]],
) -> None:
    example_env["SECRET_KEY"] = "a-key-from-the-environment-of-this-test"
    stack: RunningStack = start_stack("--workers", "1", "--lb", "nginx")
    run_dir = stack.run_dir.resolve()  # tmp_path/run0
    members = stack_members(run_dir)
    assert "SECRET_KEY: from the environment" in "".join(stack.output)
    assert not (run_dir / "secret_key").exists()
    bystanders.append(subprocess.Popen(["tail", "-f", str(run_dir / "logs" / "worker-0.log")],
                                       stdout=subprocess.DEVNULL))  # fmt: skip
    bystanders.append(subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", str(run_dir)]
    ))  # fmt: skip

    # A failing up whose run dir is a prefix of this one's (run vs run0), on the same port.
    done = run_cli("up", "--workers", "1", "--run-dir", str(tmp_path / "run"),
                   "--port", str(stack.port), env=example_env)  # fmt: skip
    assert done.returncode == 2 and "is in use" in done.stderr, done.stderr
    # A second up on the same run dir is refused without touching the running stack.
    done = run_cli("up", "--workers", "1", "--run-dir", str(run_dir),
                   "--port", str(free_port()), env=example_env)  # fmt: skip
    assert done.returncode == 2
    assert f"a stack is already running in {run_dir}" in done.stderr
    assert all(m.alive() for m in members), "a refused up stopped a process of the running stack"
    assert stack_members(run_dir) == members
    assert http_status("127.0.0.1", stack.port) == 200

    # nginx serves static files with their types (STATIC_ROOT is what nginx serves).
    static = Path(example_env["STATIC_ROOT"])
    for name in ("a.jpg", "a.woff2", "a.txt"):
        (static / name).write_bytes(b"x")
    types = {}
    for name in ("a.jpg", "a.woff2", "a.txt"):
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/static/{name}") as answer:
            types[name] = answer.headers["Content-Type"]
    assert types == {"a.jpg": "image/jpeg", "a.woff2": "font/woff2", "a.txt": "text/plain"}

    # `down` from another process stops a foreground stack; that `up` then exits 0.
    down = run_cli("down", "--run-dir", str(run_dir))
    assert down.returncode == 0, down.stderr
    assert "stopped the stack in" in down.stdout and "worker-0 (pid" in down.stdout
    assert stack.proc.wait(timeout=30 * timeout_factor()) == 0
    assert stack.stop() == 0  # already exited: this only collects the rest of its output
    assert all_gone(members)
    assert not port_in_use("127.0.0.1", stack.port)
    assert [p.poll() for p in bystanders] == [None, None], "a bystander was stopped"
    assert "supervisord was shut down" in "".join(stack.output)


def test_wrapper_survives_and_sighup_stops_the_stack(
    tmp_path: Path, example_env: dict[str, str]
) -> None:
    run_dir = tmp_path / "run"
    # A socket file left behind by a crashed uvicorn: daphne could not bind over it.
    (run_dir / "sockets").mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(run_dir / "sockets" / "worker-0.sock"))
    stack = RunningStack(["--workers", "1", "--server", "daphne"], example_env, run_dir,
                         free_port(), wrapper=("timeout", "200"))  # fmt: skip
    try:
        stack.wait_up()
        # Not even once: twisted binds over a stale socket only after a failed first attempt.
        assert "exited: worker-0" not in (run_dir / "logs" / "supervisord.log").read_text()
        members = stack_members(run_dir)
        # `timeout` passes SIGHUP (a closed terminal) on to `up`, which stops the stack.
        os.kill(stack.proc.pid, signal.SIGHUP)
        assert stack.proc.wait(timeout=60 * timeout_factor()) == 0, "".join(stack.output)
        assert stack.stop() == 0  # already exited: this only collects the rest of its output
        assert all_gone(members)
        assert "stopped: supervisord (pid" in "".join(stack.output)
    finally:
        stack.stop()


def test_detach_status_down_and_secrets(tmp_path: Path, example_env: dict[str, str]) -> None:
    run_dir, port = tmp_path / "run", free_port()
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "logs" / "worker-0.log").write_text("the previous run\n")
    args = ("--workers", "1", "--run-dir", str(run_dir), "--port", str(port))
    done = run_cli("up", "--detach", *args, env=example_env)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "channels-scale is up" in done.stdout
        assert "RUNNING" in done.stdout and "STARTING" not in done.stdout
        members = stack_members(run_dir)
        assert all(m.alive() for m in members), "the stack did not outlive `up --detach`"
        assert http_status("127.0.0.1", port) == 200

        # A fresh log per run; the previous one kept as .1.
        assert (run_dir / "logs" / "worker-0.log.1").read_text() == "the previous run\n"
        assert "the previous run" not in (run_dir / "logs" / "worker-0.log").read_text()

        # Secrets: generated per run dir, 0600, never on a command line nor in stack.json.
        key_file, password_file = run_dir / "secret_key", run_dir / "redis" / "password"
        assert f"SECRET_KEY: generated for this run dir, in {key_file.resolve()}" in done.stdout
        for path in (key_file, password_file, run_dir / "supervisord.conf"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        password = password_file.read_text().strip()
        state = (run_dir / "stack.json").read_text()
        assert password not in state
        redis_port = int(json.loads(state)["redis_url"].rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port).ping()
        assert redis.Redis(port=redis_port, password=password).ping()
        # (uvicorn, or with the default --lb direct the launcher of stack/reuseport.py)
        worker = next(m for m in members[1:] if b"stack.app:application" in _cmdline(m.pid))
        assert key_file.read_text().strip().encode() in _environ(worker.pid)
        for member in members:
            assert password.encode() not in _cmdline(member.pid)

        status = run_cli("status", "--run-dir", str(run_dir))
        assert status.returncode == 0
        assert "RUNNING" in status.stdout and "STARTING" not in status.stdout

        down = run_cli("down", "--run-dir", str(run_dir))
        assert down.returncode == 0, down.stderr
        assert f"stopped the stack in {run_dir.resolve()}: supervisord (pid" in down.stdout
        assert "worker-0 (pid" in down.stdout
        assert wait_until(lambda: all_gone(members), 10)
        assert not port_in_use("127.0.0.1", port)

        again = run_cli("down", "--run-dir", str(run_dir))
        assert again.returncode == 2
        assert again.stderr.strip().splitlines() == [
            f"channels-scale: error: no stack is running in {run_dir.resolve()}: "
            "pass the --run-dir given to up"
        ]
    finally:
        run_cli("down", "--run-dir", str(run_dir))


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


@pytest.mark.parametrize(
    ("secret", "flags", "note"),
    [
        ("a-project-key", [], "SECRET_KEY: the app's own (from its settings)"),
        (
            "dev-only-insecure-key-change-me-in-production",
            ["--insecure-secret-key"],
            "SECRET_KEY: the public default (--insecure-secret-key): dev only",
        ),
    ],
    ids=["own-key", "public-key-allowed"],
)
def test_a_project_of_its_own_runs_detached(
    tmp_path: Path, secret: str, flags: list[str], note: str
) -> None:
    project = tutorial_project(tmp_path / "project", secret=secret)
    run_dir, port = tmp_path / "run", free_port()
    done = run_cli("up", "--detach", "--app", "mysite.asgi:application", "--settings",
                   "mysite.settings", "--workers", "1", "--run-dir", str(run_dir),
                   "--port", str(port), *flags, cwd=project)  # fmt: skip
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert note in done.stdout
        assert not (run_dir / "secret_key").exists()
        assert http_status("127.0.0.1", port) == 200
    finally:
        down = run_cli("down", "--run-dir", str(run_dir))
    assert down.returncode == 0, down.stderr
