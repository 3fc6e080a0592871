"""A real Redis Cluster for the cluster broker's tests: 3 masters and 3 replicas on free ports.

Made as ``channels-scale up --redis-cluster`` makes one (:mod:`channels_scale.stack.topology`:
``redis-server --cluster-enabled yes`` processes with their own node files and explicit cluster
bus ports, then ``redis-cli --cluster create``), here with one replica per master and the shared
:class:`~tests.conftest.RedisProcess` running each node. A short ``cluster-node-timeout`` (2 s)
keeps failover tests quick. Stopped by pid (each RedisProcess owns its process).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from channels_scale.net import wait_until
from channels_scale.stack.topology import cluster_url, create_cluster, plan_nodes
from tests.conftest import RedisProcess
from tests.layer.conftest import ours_memory_layer_factory
from tests.shared_suites import (
    factory,
    layer,
    layer_factory,
    pair_layer_factory,
    redis_layer_factory,
)

__all__ = [  # the shared suites' fixtures, and the in-memory twin they compare with
    "factory",
    "layer",
    "layer_factory",
    "ours_memory_layer_factory",
    "pair_layer_factory",
    "redis_layer_factory",
]

NODE_TIMEOUT_MS = 2000


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each; :attr:`url` is the layer's
    ``redis+cluster://`` URL (the masters as seeds). Made by ``up --redis-cluster``'s own code
    (:mod:`channels_scale.stack.topology`); the nodes are :class:`RedisProcess` objects."""

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 1) -> None:
        self.masters, self.replicas = masters, replicas
        self.plan = plan_nodes(masters * (1 + replicas), workdir)
        self.nodes = [
            RedisProcess(node.directory, node.port, node.args(NODE_TIMEOUT_MS))
            for node in self.plan
        ]

    @property
    def url(self) -> str:
        return cluster_url(self.plan, None, seeds=self.masters)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli is not installed: run ./scripts/install")
        create_cluster(cli, self.plan, None, replicas=self.replicas, timeout=60)
        if not wait_until(self.healthy, 30):
            pytest.fail("the Redis Cluster's replicas did not attach")

    def client(self, node: RedisProcess) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2)

    def healthy(self) -> bool:
        """Every running node says ``cluster_state:ok`` and every slot range has a replica
        (replicas attach after ``--cluster create`` returns; a failover needs them)."""
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                with self.client(node) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    if isinstance(info, bytes):
                        info = info.decode()
                    if "cluster_state:ok" not in str(info):
                        return False
                    slots = client.execute_command("CLUSTER", "SLOTS")
                    if any(len(entry) < 4 for entry in slots):
                        return False
            except redis.RedisError:
                return False
        return True

    def master_of(self, key: str) -> RedisProcess:
        """The running node that is the master of ``key``'s slot."""
        for node in self.nodes:
            if node.proc is None:
                continue
            with self.client(node) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise AssertionError("no node answers")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(kill=True)


def start_cluster(workdir: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One cluster for the tests that only need *a* cluster (they use their own prefix)."""
    yield from start_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A cluster of one's own, for tests that kill nodes."""
    yield from start_cluster(tmp_path)


# -- the shared layer suites on the cluster: tests/shared_suites.py's fixtures (as tests/sentinel
# -- and tests/shards use them), with the cluster behind ``layer_hosts``


@pytest.fixture
def layer_hosts(redis_cluster: RedisCluster) -> list[str]:
    return [redis_cluster.url]
