"""Bad input to ``channels-scale up``/``status``: one line, exit code 2, nothing left running."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

import pytest

from channels_scale import cli
from channels_scale.net import free_port
from channels_scale.stack import control
from channels_scale.stack.options import RunLayout
from tests.stackrunner import run_cli


def _assert_clean_failure(done: object, run_dir: Path, expected: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr  # type: ignore[attr-defined]
    stderr = done.stderr.strip()  # type: ignore[attr-defined]
    assert expected in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert "usage:" not in stderr
    # Nothing left running: no supervisord answers there and nobody holds the run dir's lock.
    layout = RunLayout.of(run_dir)
    assert control.supervisor_processes(layout) is None
    assert not control.RunLock(layout).held_elsewhere()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--workers", "0"], "--workers: must be at least 1"),
        (["--lb", "apache"], "invalid choice: 'apache'"),
        (["--layer", "nope"], "invalid choice: 'nope'"),
        (["--port", "70000"], "must be at most 65535"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_flags_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    done = run_cli("up", "--run-dir", str(tmp_path / "run"), *args)
    _assert_clean_failure(done, tmp_path / "run", expected)


def test_unknown_app(tmp_path: Path, example_env: dict[str, str]) -> None:
    run = tmp_path / "run"
    done = run_cli("up", "--app", "nosuchmodule.asgi:application", "--run-dir", str(run),
                   "--port", str(free_port()), env=example_env)  # fmt: skip
    _assert_clean_failure(done, run, "cannot load --app nosuchmodule.asgi:application")
    assert "No module named 'nosuchmodule'" in done.stderr
    assert "--pythonpath" in done.stderr


def test_app_without_colon(tmp_path: Path) -> None:
    done = run_cli("up", "--app", "config.asgi", "--run-dir", str(tmp_path / "r"))
    _assert_clean_failure(done, tmp_path / "r", "must be MODULE:ATTRIBUTE")


def test_port_in_use(tmp_path: Path, example_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = tmp_path / "run"
        done = run_cli("up", "--port", str(port), "--run-dir", str(run), env=example_env)
    _assert_clean_failure(done, run, f"port {port} on 127.0.0.1 is in use")


@pytest.mark.parametrize(
    ("variable", "flags", "expected"),
    [
        ("CHANNELS_SCALE_NGINX", [], "nginx is not installed"),
        ("CHANNELS_SCALE_HAPROXY", ["--lb", "haproxy"], "haproxy is not installed"),
        ("CHANNELS_SCALE_REDIS_SERVER", [], "redis-server is not installed"),
    ],
)
def test_missing_program(
    tmp_path: Path, example_env: dict[str, str], variable: str, flags: list[str], expected: str
) -> None:
    env = {**example_env, variable: str(tmp_path / "not-there")}
    run = tmp_path / "run"
    done = run_cli("up", "--port", str(free_port()), "--run-dir", str(run), *flags, env=env)
    _assert_clean_failure(done, run, expected)


def test_run_dir_not_writable(tmp_path: Path, example_env: dict[str, str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run = blocker / "run"
    done = run_cli("up", "--port", str(free_port()), "--run-dir", str(run), env=example_env)
    assert done.returncode == 2
    assert f"run directory {run} is not writable" in done.stderr


def test_redis_that_does_not_answer(tmp_path: Path, example_env: dict[str, str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    run = tmp_path / "run"
    done = run_cli("up", "--redis", url, "--port", str(free_port()), "--run-dir", str(run),
                   env=example_env)  # fmt: skip
    _assert_clean_failure(done, run, f"Redis at {url} does not answer")


def test_status_of_a_run_dir_without_stack(tmp_path: Path) -> None:
    done = run_cli("status", "--run-dir", str(tmp_path))
    assert done.returncode == 2
    assert "no stack was started in" in done.stderr


def test_no_command_exits_2_with_one_line() -> None:
    done = run_cli()
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "channels-scale: error: the following arguments are required: COMMAND "
        "(see channels-scale --help)"
    ]


def test_help_shows_defaults_and_usage() -> None:
    done = run_cli("up", "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: channels-scale up")
    for default in ("(default: 8000)", "(default: nginx)", "(default: 65536)"):
        assert default in " ".join(done.stdout.split()), default


def test_installed_without_the_example_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An installed wheel has no example/ beside the package: what EXAMPLE_DIR points at then.
    monkeypatch.setattr(cli, "EXAMPLE_DIR", tmp_path / "not-installed")
    assert cli.main(["up", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--app MYPROJECT.asgi:application" in err
    assert not (tmp_path / "run").exists()


def test_more_connections_than_haproxy_holds(tmp_path: Path, example_env: dict[str, str]) -> None:
    # As many websockets as one process may open files: HAProxy (one process) needs twice that.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    conns = min(hard if hard != resource.RLIM_INFINITY else 1 << 20, 1 << 20)
    run = tmp_path / "run"
    done = run_cli("up", "--lb", "haproxy", "--workers", "4", "--max-connections", str(conns),
                   "--run-dir", str(run), "--port", str(free_port()), env=example_env)  # fmt: skip
    _assert_clean_failure(done, run, f"through HAProxy (one process) needs {2 * conns + 256:,}")
