"""The wheel, installed alone (no extras) into a fresh virtualenv, is what a Django project needs.

The build and the virtualenvs come from tests/packaging/conftest.py (one build per session; each
virtualenv about 5 s with uv's cache).
"""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import RedisProcess
from tests.packaging.conftest import Venv

# Packages of the extras (server, daphne, bench) that the base install must not pull in.
NOT_IN_BASE = {
    "channels-redis", "daphne", "hdrhistogram", "matplotlib", "numpy", "picows", "pillow",
    "rich", "supervisor", "twisted", "uvicorn", "uvloop", "websockets", "wsproto",
}  # fmt: skip


def test_build_makes_an_sdist_and_a_wheel_with_the_example(dist: Path, wheel: Path) -> None:
    (sdist,) = dist.glob("channels_scale-*.tar.gz")
    with tarfile.open(sdist) as tar:
        assert any(n.endswith("/example/config/settings.py") for n in tar.getnames())
    names = zipfile.ZipFile(wheel).namelist()
    assert "channels_scale/example/config/asgi.py" in names
    assert "channels_scale/example/chat/migrations/0001_initial.py" in names
    assert "channels_scale/static/channels_scale/client.js" in names
    # A checkout's local data never ships (the build ran from the sdist, which .gitignore shaped).
    assert not [n for n in names if "sqlite3" in n or "/staticfiles/" in n or ".pyc" in n]


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
