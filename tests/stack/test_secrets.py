"""The private Redis' password: kept off command lines, quoted for redis.conf and for URLs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from channels_scale.net import free_port, wait_until
from channels_scale.stack.preflight import masked, private_redis_url, redis_conf, write_private
from tests.stackrunner import run_cli

AWKWARD = 'p@ss:w/o"rd \\ %20#'


def test_an_awkward_password_works_in_redis_conf_and_in_the_url(tmp_path: Path) -> None:
    conf = tmp_path / "redis.conf"
    write_private(conf, redis_conf(AWKWARD))
    assert conf.stat().st_mode & 0o777 == 0o600
    port = free_port()
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: run ./scripts/install"
    server = subprocess.Popen(
        [binary, str(conf), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = private_redis_url(port, AWKWARD)
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        assert wait_until(lambda: _pings(client), 10)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password=AWKWARD + "x").ping()
        client.close()
    finally:
        server.kill()
        server.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_masked_hides_only_the_password() -> None:
    url = private_redis_url(6390, AWKWARD)
    assert AWKWARD not in masked(url)
    assert masked(url) == "redis://:***@127.0.0.1:6390/0"
    assert masked("redis://10.0.0.1:6379/2") == "redis://10.0.0.1:6379/2"
    assert masked("rediss://app:secret@h:1/0") == "rediss://app:***@h:1/0"


def test_a_password_for_an_external_redis_is_refused(tmp_path: Path) -> None:
    done = run_cli("up", "--redis", "redis://127.0.0.1:1/0", "--redis-password", "x",
                   "--run-dir", str(tmp_path / "run"))  # fmt: skip
    assert done.returncode == 2
    assert "put the password in the --redis URL" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
