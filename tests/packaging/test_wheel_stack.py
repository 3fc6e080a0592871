"""``channels-scale up`` from the installed wheel, in a virtualenv with no dev dependencies.

Two real stacks (supervisor, Redis, nginx, uvicorn workers) run from the virtualenv's own console
script: the Channels tutorial's chat project on two workers (a message crosses workers), and the
bundled example with no ``--app`` (shipped inside the wheel, its SQLite DB made in the run dir).
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from websockets.asyncio.client import connect

from channels_scale.net import free_port, timeout_factor
from tests.packaging.conftest import Venv
from tests.stack.stackclients import TUTORIAL
from tests.stack.test_tutorial_project import _deliver_across_workers

pytestmark = pytest.mark.e2e
WAIT = 10 * timeout_factor()
UP_TIMEOUT = 150 * timeout_factor()


def _up(venv: Venv, run_dir: Path, port: int, *args: str) -> None:
    done = venv.run(
        venv.cli, "up", "--detach", "--port", str(port), "--run-dir", str(run_dir), *args,
        timeout=UP_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "channels-scale is up:" in done.stdout, done.stdout


def _down(venv: Venv, run_dir: Path) -> None:
    if (run_dir / "supervisord.conf").exists():
        done = venv.run(venv.cli, "down", "--run-dir", str(run_dir), timeout=UP_TIMEOUT)
        assert done.returncode == 0, done.stdout + done.stderr


def _runs_from(venv: Venv, run_dir: Path) -> None:
    """The workers run the virtualenv's Python, not the dev environment's."""
    conf = (run_dir / "supervisord.conf").read_text()
    assert f"{venv.root}/bin/python" in conf, conf
    assert str(Path(__file__).resolve().parents[2] / ".venv") not in conf, conf


def test_console_script_and_imports(server_venv: Venv) -> None:
    done = server_venv.run(server_venv.cli, "--help")
    assert done.returncode == 0, done.stderr
    assert "up" in done.stdout
    code = (
        "import uvicorn, supervisor, channels_scale.stack, channels_scale.cli;"
        "from channels_scale.stack.options import EXAMPLE_DIR, EXAMPLE_INSTALLED;"
        "print(EXAMPLE_INSTALLED, EXAMPLE_DIR)"
    )
    done = server_venv.python_code(code)
    assert done.returncode == 0, done.stderr
    installed, where = done.stdout.split()
    assert installed == "True"
    assert where.startswith(str(server_venv.root)) and where.endswith("channels_scale/example")


async def test_tutorial_project_delivers_across_two_workers(
    tutorial_venv: Venv, tmp_path: Path
) -> None:
    run_dir, port = tmp_path / "run", free_port()
    try:
        _up(
            tutorial_venv, run_dir, port,
            "--workers", "2", "--app", "mysite.asgi:application", "--pythonpath", str(TUTORIAL),
        )  # fmt: skip
        _runs_from(tutorial_venv, run_dir)
        # The helper reads only where the stack is: its run dir and port.
        stack = SimpleNamespace(run_dir=run_dir, port=port, ws_url=f"ws://127.0.0.1:{port}")
        await _deliver_across_workers(stack, f"{stack.ws_url}/ws/chat/lobby/")  # type: ignore[arg-type]
    finally:
        _down(tutorial_venv, run_dir)


async def test_bundled_example_runs_with_no_app(server_venv: Venv, tmp_path: Path) -> None:
    run_dir, port = tmp_path / "run", free_port()
    # The premise: daphne is not installed ([server] alone), and the wheel's example has no DB.
    assert server_venv.python_code("import daphne").returncode != 0
    example = Path(
        server_venv.python_code(
            "from channels_scale.stack.options import EXAMPLE_DIR; print(EXAMPLE_DIR)"
        ).stdout.strip()
    )
    assert (example / "config" / "settings.py").is_file()
    try:
        _up(server_venv, run_dir, port, "--workers", "1", "--lb", "nginx")
        _runs_from(server_venv, run_dir)
        base = f"http://127.0.0.1:{port}"

        def get(path: str) -> int:
            try:
                with urllib.request.urlopen(base + path, timeout=WAIT) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert get("/") == 200  # redirected to the login page, which renders
        assert get("/login/") == 200
        assert get("/static/chat/chat.css") == 200  # collected into the run dir, served by nginx
        room = f"ws://127.0.0.1:{port}/ws/broadcast/lobby/"
        async with (
            connect(room, origin=base, open_timeout=WAIT) as first,  # type: ignore[arg-type]
            connect(room, origin=base, open_timeout=WAIT) as second,  # type: ignore[arg-type]
        ):
            await first.send("hello from the wheel")
            assert await asyncio.wait_for(second.recv(), WAIT) == "hello from the wheel"
        # The example's data went to the run dir, with the demo users; none into site-packages.
        db = run_dir / "example" / "db.sqlite3"
        with sqlite3.connect(db) as conn:
            users = {row[0] for row in conn.execute("select username from auth_user")}
        assert {"demo", "demo2"} <= users
        assert (run_dir / "example" / "staticfiles" / "chat" / "chat.css").is_file()
        assert not (example / "db.sqlite3").exists()
        assert not (example / "staticfiles").exists()
    finally:
        _down(server_venv, run_dir)
