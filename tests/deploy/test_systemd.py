"""deploy/systemd/: ``systemd-analyze verify`` on the units, and the settings that matter.

``systemd-analyze verify`` works without a running systemd (it loads the units in a private
manager), so it runs here whenever the binary exists. It exits 0 even for unknown keys or bad
values (they are "ignored" with a message), so the test also requires empty output. It checks that
ExecStart's program exists: the copy under test points at this test's Python instead of
/srv/channels-scale/app/.venv/bin/python. The settings themselves are asserted from a parse of the
files as shipped (tests below), which runs even where systemd-analyze is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.deployfiles import (
    DEPLOY,
    SOCKET_DIR,
    parse_unit,
    read,
    systemd_worker_argv,
    unit_value,
    unit_values,
)

UNITS = ("channels-scale-worker@.service", "channels-scale.target", "channels-scale-redis.service")
VENV_PYTHON = "/srv/channels-scale/app/.venv/bin/python"


def _worker() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(read("systemd/channels-scale-worker@.service"))


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the parse tests below still run)")
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace(VENV_PYTHON, sys.executable))
    targets = [
        str(tmp_path / "channels-scale-worker@0.service"),
        str(tmp_path / "channels-scale-worker@3.service"),
        str(tmp_path / "channels-scale.target"),
        str(tmp_path / "channels-scale-redis.service"),
    ]
    done = subprocess.run(
        [analyze, "verify", "--man=no", *targets],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == "", done.stdout + done.stderr


def test_worker_unit_settings() -> None:
    unit = _worker()
    service = dict(unit["Service"])
    assert service["User"] == "channels-scale"
    assert service["Group"] == "channels-scale"
    assert unit_value(unit, "Service", "EnvironmentFile") == "/etc/channels-scale/env"
    assert "CHANNELS_SCALE_WORKER_ID=%i" in unit_values(unit, "Service", "Environment")
    assert unit_value(unit, "Service", "RuntimeDirectory") == "channels-scale"
    # Shared by every instance: without Preserve the first worker to stop deletes the others'
    # sockets.
    assert unit_value(unit, "Service", "RuntimeDirectoryPreserve") == "yes"
    assert unit_value(unit, "Service", "Restart") == "always"
    assert unit_value(unit, "Service", "LimitNOFILE") == "65536"
    assert unit_value(unit, "Service", "KillSignal") == "SIGTERM"
    assert unit_value(unit, "Service", "KillMode") == "mixed"
    assert unit_value(unit, "Unit", "PartOf") == "channels-scale.target"
    assert unit_value(unit, "Install", "WantedBy") == "channels-scale.target"
    assert systemd_worker_argv(0)[0] == VENV_PYTHON


@pytest.mark.parametrize("worker", [0, 3, 11])
def test_worker_socket_follows_the_instance_name(worker: int) -> None:
    argv = systemd_worker_argv(worker)
    assert argv[argv.index("--uds") + 1] == f"{SOCKET_DIR}/worker-{worker}.sock"
    unit = _worker()
    assert f"/run/{unit_value(unit, 'Service', 'RuntimeDirectory')}" == SOCKET_DIR


def test_stop_timeout_outlasts_uvicorn_graceful_shutdown() -> None:
    argv = systemd_worker_argv(0)
    graceful = float(argv[argv.index("--timeout-graceful-shutdown") + 1])
    stop = float(unit_value(_worker(), "Service", "TimeoutStopSec"))
    assert graceful + 5 <= stop <= 60


def test_target_and_redis_unit() -> None:
    target = parse_unit(read("systemd/channels-scale.target"))
    assert unit_value(target, "Install", "WantedBy") == "multi-user.target"
    redis = parse_unit(read("systemd/channels-scale-redis.service"))
    assert unit_value(redis, "Install", "WantedBy") == "channels-scale.target"
    assert unit_value(redis, "Service", "Restart") == "always"
    command = unit_value(redis, "Service", "ExecStart")
    assert "--port 6380" in command and "--bind 127.0.0.1" in command
    assert '--save ""' in command and "--appendonly no" in command
    assert "--maxmemory-policy noeviction" in command
    # Workers are ordered after the optional Redis, never made to require it.
    worker = _worker()
    assert "channels-scale-redis.service" in unit_value(worker, "Unit", "After")
    for key in ("Requires", "BindsTo", "Requisite"):
        assert not unit_values(worker, "Unit", key)


def test_env_example_points_at_the_redis_unit() -> None:
    env = dict(
        line.split("=", 1)
        for line in read("systemd/env.example").splitlines()
        if line and not line.startswith("#")
    )
    assert env["CHANNELS_SCALE_REDIS_URL"] == "redis://127.0.0.1:6380/0"
    # EnvironmentFile= overrides Environment=: the id must come from the unit only.
    assert "CHANNELS_SCALE_WORKER_ID" not in env
    assert env["STATIC_ROOT"] == "/srv/channels-scale/static"
    assert env["CHANNELS_SCALE_SERVE_STATIC"] == "0"
