"""``channels-scale up`` on every Redis topology the layer accepts: ``--redis`` with one URL,
K shards, a Redis Cluster (``redis+cluster://``), and ``--redis-cluster N``.

Three shards are this module's redis-servers; the cluster is the one ``up --redis-cluster 3``
starts, which a second stack then joins with ``--redis redis+cluster://...`` (as another host
would). Each stack runs detached, is checked, and is stopped with ``channels-scale down``.
Sentinel: tests/sentinel/test_sentinel_reach.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.asyncio.client import unix_connect

from channels_scale.exceptions import ConfigError
from channels_scale.layer.config import decode_hosts, split_hosts
from channels_scale.net import free_port
from channels_scale.settings import channel_layer_config, describe_hosts, on_hosts, redact
from channels_scale.stack.options import StackOptions
from channels_scale.stack.preflight import check_redis
from tests.conftest import RedisProcess, redis_servers, scaled
from tests.stackrunner import run_cli

CLUSTER = "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001"
SENTINEL = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster?sentinel_password=spw"


# -- the --redis value (pure) -----------------------------------------------------------------


def test_split_hosts_tells_shards_from_a_urls_own_host_list() -> None:
    assert split_hosts("redis://:a@h1:1/0, rediss://h2:2/0") == [
        "redis://:a@h1:1/0",
        "rediss://h2:2/0",
    ]
    assert split_hosts(CLUSTER) == [CLUSTER]
    assert split_hosts(SENTINEL) == [SENTINEL]
    assert len(decode_hosts(split_hosts(CLUSTER))) == 1


@pytest.mark.parametrize("value", ["redis://:pw@h1:1/0,redis://u:pw@h2:2/0", CLUSTER, SENTINEL])
def test_every_password_is_masked(value: str) -> None:
    shown = redact(value)
    assert "pw" not in shown.replace("***", ""), shown
    assert "10.0.0.1" in shown or "h1" in shown


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        ("redis://h1:1/0,redis://h2:2/0", ["redis://h1:1/0", "redis://h2:2/0"]),
        (CLUSTER, [CLUSTER]),
        (SENTINEL, [SENTINEL]),
    ],
)
def test_the_workers_layer_gets_the_hosts(value: str, hosts: list[str]) -> None:
    config = channel_layer_config("channels_scale", value)
    assert config["CONFIG"]["hosts"] == hosts
    assert on_hosts(value, describe_hosts(config))
    recipe = channel_layer_config("channels_redis", "redis://h1:1/0,redis://h2:2/0")
    assert [h["address"] for h in recipe["CONFIG"]["hosts"]] == ["redis://h1:1/0", "redis://h2:2/0"]


# -- against real Redis -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisProcess]]:
    with redis_servers(tmp_path_factory, "upshard", 3) as servers:
        yield servers


def _up_detached(run_dir: Path, env: dict[str, str], *args: str) -> tuple[dict[str, Any], str]:
    done = run_cli("up", "--detach", "--run-dir", str(run_dir),
                   "--port", str(free_port()), *args, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "channels-scale is up:" in done.stdout
    state: dict[str, Any] = json.loads((run_dir / "stack.json").read_text())
    return state, done.stdout


def _down(run_dir: Path) -> None:
    done = run_cli("down", "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr


@pytest.mark.e2e
def test_up_on_shards(
    tmp_path: Path, example_env: dict[str, str], shards: list[RedisProcess]
) -> None:
    value = ",".join(server.url for server in shards)
    run_dir = tmp_path / "shards"
    try:
        state, output = _up_detached(run_dir, example_env, "--workers", "1", "--redis", value)
        assert state["redis_url"] == value  # no password: shown as given
        # every worker's layer answered a round trip on exactly these hosts (stack/readiness)
        assert "it answers a send + receive in every worker" in output
        assert all(host in output for host in split_hosts(value))
    finally:
        _down(run_dir)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("dead-shard", "Redis at redis://127.0.0.1:{dead}/0 does not answer"),
        ("dead-seed", "Redis at redis://127.0.0.1:{dead}/0 does not answer"),
        ("not-a-cluster", "refused CLUSTER"),
        ("bad-url", "is invalid"),
        ("dead-sentinel", "Redis at redis+sentinel://127.0.0.1:{dead}/mymaster does not answer"),
        ("recipe-on-cluster", "--layer channels_redis takes only redis:// URLs"),
    ],
)
def test_unreachable_or_invalid_redis_is_one_line_naming_the_host(
    shards: list[RedisProcess], kind: str, expected: str
) -> None:
    dead = free_port()
    alive = shards[0].port
    value = {
        "dead-shard": f"redis://127.0.0.1:{alive}/0,redis://:secret@127.0.0.1:{dead}/0",
        "dead-seed": f"redis+cluster://:secret@127.0.0.1:{dead}",
        "not-a-cluster": f"redis+cluster://127.0.0.1:{alive}",
        "bad-url": f"redis+cluster://:secret@127.0.0.1:{alive}/3",
        "dead-sentinel": f"redis+sentinel://:secret@127.0.0.1:{dead}/mymaster",
        "recipe-on-cluster": f"redis+cluster://:secret@127.0.0.1:{alive}",
    }[kind]
    layer = "channels_redis" if kind == "recipe-on-cluster" else "channels_scale"
    with pytest.raises(ConfigError) as raised:
        check_redis(value, layer)
    line = str(raised.value)
    assert len(line.splitlines()) == 1, line
    assert expected.format(dead=dead) in line, line
    assert "secret" not in line


def test_up_exits_2_with_that_line(tmp_path: Path) -> None:
    dead = f"redis+cluster://:secret@127.0.0.1:{free_port()}"
    done = run_cli("up", "--run-dir", str(tmp_path / "run"), "--redis", dead)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "does not answer" in done.stderr and "secret" not in done.stderr


async def _exchange(sender_socket: Path, receiver_socket: Path, room: str) -> None:
    """A client on one worker sends to the example's broadcast group; one on another worker gets
    it (each connected to its worker's own socket: the message crosses processes and Redis)."""
    url = f"ws://localhost/ws/broadcast/{room}/"
    async with (
        unix_connect(str(sender_socket), url) as sender,
        unix_connect(str(receiver_socket), url) as receiver,
    ):
        # the receiver's group subscription completes in the background: send until one arrives
        deadline = time.monotonic() + scaled(15)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            await sender.send(f"hello {n}")
            try:
                got = await asyncio.wait_for(receiver.recv(), 0.5)
            except TimeoutError:
                continue
            assert str(got).startswith("hello "), got
            return
        pytest.fail(f"no group message crossed from {sender_socket} to {receiver_socket}")


def _worker(run_dir: Path, worker: int) -> Path:
    return run_dir.resolve() / "sockets" / f"worker-{worker}.sock"


@pytest.mark.e2e
async def test_up_redis_cluster_and_a_second_stack_on_that_cluster(
    tmp_path: Path, example_env: dict[str, str]
) -> None:
    """``--redis-cluster 3 --workers 2`` (stack A), then ``--redis redis+cluster://...`` on A's
    cluster (stack B, as a second host would run it): group messages cross A's two workers and
    from B to A."""
    first, second = tmp_path / "a", tmp_path / "b"
    downs = []
    try:
        state, output = _up_detached(first, example_env, "--workers", "2", "--redis-cluster", "3")
        password = (first / "redis" / "password").read_text().strip()
        assert state["redis_url"].startswith("redis+cluster://:***@127.0.0.1:")
        assert password not in json.dumps(state) and password not in output
        assert state["redis_url"].count(",") == 2  # three seeds
        await _exchange(_worker(first, 0), _worker(first, 1), "topology")
        # the nodes ask for the password and are one cluster of 3 masters
        port = int(state["redis_url"].rsplit(":", 1)[1])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        with redis.Redis(port=port, password=password) as client:
            info = client.execute_command("CLUSTER", "INFO").decode()
        assert "cluster_state:ok" in info and "cluster_size:3" in info

        url = state["redis_url"].replace("***", password)
        theirs, output = _up_detached(second, example_env, "--workers", "1", "--redis", url)
        assert theirs["redis_url"] == state["redis_url"] and password not in output
        assert "it answers a send + receive in every worker" in output
        await _exchange(_worker(second, 0), _worker(first, 1), "two-stacks")
    finally:
        downs = [run_cli("down", "--run-dir", str(run_dir)) for run_dir in (second, first)]
    assert downs[1].returncode == 0, downs[1].stderr
    for name in ("redis-0", "redis-1", "redis-2", "worker-0", "worker-1"):
        assert name in downs[1].stdout


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"redis_cluster": 2}, "--redis-cluster needs at least 3 masters"),
        ({"redis_cluster": 3, "redis_url": "redis://h:1/0"}, "leave out --redis"),
        ({"redis_cluster": 3, "layer": "channels_redis"}, "needs --layer channels_scale"),
    ],
)
def test_bad_redis_cluster_options(options: dict[str, Any], expected: str) -> None:
    problems = StackOptions(**options).problems()
    assert len(problems) == 1 and expected in problems[0], problems
