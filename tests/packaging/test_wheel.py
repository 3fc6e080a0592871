"""The wheel, installed alone (no extras) into a fresh virtualenv, is what a Django project needs.

One wheel build and two virtualenvs for the module (the wheel alone, the wheel with ``[server]``;
about 10 s with uv's cache); every check runs the virtualenv's own interpreter or console script
from a directory outside the checkout, so nothing of ``src/`` or the dev environment leaks in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RedisProcess

ROOT = Path(__file__).resolve().parents[2]

# Packages of the extras (server, daphne, bench) that the base install must not pull in.
NOT_IN_BASE = {
    "channels-redis", "daphne", "hdrhistogram", "matplotlib", "numpy", "picows", "pillow",
    "rich", "supervisor", "twisted", "uvicorn", "uvloop", "websockets", "wsproto",
}  # fmt: skip


def _uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path.home() / ".local/bin"))
    assert found, "uv is not installed: run ./scripts/install"
    return found


class Venv:
    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = root
        self.workdir = workdir
        self.python = root / "bin" / "python"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.env = env

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def python_code(self, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.python), "-c", code, *args)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [_uv(), "build", "--wheel", "--quiet", "-o", str(dist), str(ROOT)], check=True, timeout=120
    )
    (built,) = dist.glob("channels_scale-*.whl")
    # The locked versions, as constraints only (they pin, they add nothing): the venvs get what
    # uv.lock says, from uv's cache, as a user installing today would get the same set.
    locked = subprocess.run(
        [_uv(), "export", "--frozen", "--all-extras", "--no-dev", "--no-emit-project",
         "--no-hashes", "--quiet"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    (dist / "constraints.txt").write_text(locked)
    return built


def _venv(tmp: Path, requirement: str, wheel: Path) -> Venv:
    root = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", str(root / "bin" / "python"),
         "--constraint", str(wheel.parent / "constraints.txt"), requirement],
        check=True, timeout=120,
    )  # fmt: skip
    work = tmp / "elsewhere"
    work.mkdir()
    return Venv(root, work)


@pytest.fixture(scope="module")
def base_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel alone: what ``pip install channels-scale`` gives a Django project."""
    return _venv(tmp_path_factory.mktemp("base"), str(wheel), wheel)


@pytest.fixture(scope="module")
def server_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel with ``[server]`` only."""
    return _venv(
        tmp_path_factory.mktemp("server"), f"channels-scale[server] @ {wheel.as_uri()}", wheel
    )


def test_base_install_pulls_no_extra(base_venv: Venv) -> None:
    done = base_venv.python_code(
        "import json, importlib.metadata as m;"
        "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))"
    )
    assert done.returncode == 0, done.stderr
    installed = set(json.loads(done.stdout))
    assert {"django", "channels", "redis", "hiredis", "msgpack", "channels-scale"} <= installed
    assert installed & NOT_IN_BASE == set()


def test_base_install_imports_the_runtime_and_ships_client_js(base_venv: Venv) -> None:
    code = """
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=["channels_scale"])
django.setup()
import channels_scale.layer, channels_scale.consumers, channels_scale.history.consumer
import channels_scale.presence, channels_scale.asgi
from pathlib import Path
js = Path(channels_scale.__file__).parent / "static" / "channels_scale" / "client.js"
assert js.stat().st_size > 1000, js
print(channels_scale.__file__)
"""
    done = base_venv.python_code(code)
    assert done.returncode == 0, done.stderr
    assert str(base_venv.root) in done.stdout  # the wheel's copy, not the checkout's


def test_base_install_layer_round_trip(base_venv: Venv, shared_redis: RedisProcess) -> None:
    code = """
import asyncio, sys
from channels_scale.layer import RedisChannelLayer

async def main():
    layer = RedisChannelLayer(hosts=[sys.argv[1]], prefix="wheel-test")
    channel = await layer.new_channel()
    await layer.group_add("wheel", channel)
    await layer.group_send("wheel", {"type": "chat.message", "text": "hi"})
    message = await asyncio.wait_for(layer.receive(channel), 10)
    await layer.flush()  # this prefix's keys only
    await layer.close()
    print(message["text"])

asyncio.run(main())
"""
    done = base_venv.python_code(code, shared_redis.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hi"


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["bench", "fanout", "--url", "ws://127.0.0.1:9"], "bench"),
        (["bench", "--help"], "bench"),
        (["bench", "--subs", "3", "fanout"], "bench"),
        (["up", "--workers", "1"], "server"),
        (["status"], "server"),
    ],
)
def test_command_without_its_extra_names_it(base_venv: Venv, argv: list[str], extra: str) -> None:
    done = base_venv.run(str(base_venv.root / "bin" / "channels-scale"), *argv)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"needs the {extra} extra: pip install 'channels-scale[{extra}]'" in lines[0]
    assert done.stdout == ""


def test_help_works_without_extras(base_venv: Venv) -> None:
    done = base_venv.run(str(base_venv.root / "bin" / "channels-scale"), "--help")
    assert done.returncode == 0, done.stderr
    assert "bench" in done.stdout and "up" in done.stdout


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["up", "--server", "daphne"], "up --server daphne needs the daphne extra"),
        (["up", "--layer", "channels_redis"], "up --layer channels_redis needs the bench extra"),
        (["bench", "fanout"], "bench needs the bench extra"),
    ],
)
def test_server_extra_alone_names_the_next_extra(
    server_venv: Venv, argv: list[str], line: str
) -> None:
    done = server_venv.run(str(server_venv.root / "bin" / "channels-scale"), *argv)
    assert done.returncode == 2, (done.stdout, done.stderr)
    (only,) = done.stderr.strip().splitlines()
    assert line in only
    # The premise: [server] itself is installed there, so `up` got past its own check.
    assert server_venv.python_code("import uvicorn, supervisor, rich").returncode == 0
