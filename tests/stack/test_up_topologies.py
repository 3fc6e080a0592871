"""``channels-scale up`` on every Redis topology the layer accepts: ``--redis`` with one URL,
K shards, a Redis Cluster (``redis+cluster://``), and ``--redis-cluster N``.

The shards and the cluster are the session's (tests/shards, tests/cluster); each stack runs
detached, is checked, and stopped with ``channels-scale down``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from channels_scale.layer.config import decode_hosts, split_hosts
from channels_scale.net import free_port
from channels_scale.settings import channel_layer_config, describe_hosts, on_hosts, redact
from tests.cluster.conftest import RedisCluster, start_cluster
from tests.conftest import RedisProcess
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
    servers = [RedisProcess(tmp_path_factory.mktemp(f"upshard{i}")) for i in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop(kill=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    yield from start_cluster(tmp_path_factory.mktemp("upcluster"))


def _up_detached(run_dir: Path, env: dict[str, str], *args: str) -> tuple[dict[str, Any], str]:
    done = run_cli("up", "--detach", "--workers", "1", "--run-dir", str(run_dir),
                   "--port", str(free_port()), *args, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "channels-scale is up:" in done.stdout
    state: dict[str, Any] = json.loads((run_dir / "stack.json").read_text())
    return state, done.stdout


def _down(run_dir: Path) -> None:
    done = run_cli("down", "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr


def test_up_on_shards_and_on_a_cluster(
    tmp_path: Path, example_env: dict[str, str], shards: list[RedisProcess], cluster: RedisCluster
) -> None:
    value = ",".join(server.url for server in shards)
    for name, redis_value in (("shards", value), ("cluster", cluster.url)):
        run_dir = tmp_path / name
        try:
            state, output = _up_detached(run_dir, example_env, "--redis", redis_value)
            assert state["redis_url"] == redis_value  # no password: shown as given
            # every worker's layer answered a round trip on exactly these hosts (stack/readiness)
            assert "it answers a send + receive in every worker" in output
            assert all(host in output for host in split_hosts(redis_value))
        finally:
            _down(run_dir)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("dead-shard", "Redis at redis://127.0.0.1:{dead}"),
        ("dead-seed", "Redis at redis://127.0.0.1:{dead}"),
        ("not-a-cluster", "refused CLUSTER"),
        ("bad-url", "is invalid"),
        ("dead-sentinel", "Redis at redis+sentinel://127.0.0.1:{dead}/mymaster does not answer"),
    ],
)
def test_unreachable_or_invalid_redis_is_one_line_naming_the_host(
    tmp_path: Path, shards: list[RedisProcess], kind: str, expected: str
) -> None:
    dead = free_port()
    alive = shards[0].port
    value = {
        "dead-shard": f"redis://127.0.0.1:{alive}/0,redis://:secret@127.0.0.1:{dead}/0",
        "dead-seed": f"redis+cluster://:secret@127.0.0.1:{dead}",
        "not-a-cluster": f"redis+cluster://127.0.0.1:{alive}",
        "bad-url": f"redis+cluster://:secret@127.0.0.1:{alive}/3",
        "dead-sentinel": f"redis+sentinel://:secret@127.0.0.1:{dead}/mymaster",
    }[kind]
    done = run_cli("up", "--run-dir", str(tmp_path / "run"), "--port", str(free_port()),
                   "--redis", value)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert expected.format(dead=dead) in line, line
    assert "secret" not in line
