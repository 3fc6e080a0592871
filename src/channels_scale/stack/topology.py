"""A private Redis Cluster on one machine: ``up --redis-cluster N``, the bench's ``cluster:N``
topology and the tests' cluster fixture make it the same way, the way an operator does.

N ``redis-server --cluster-enabled yes`` processes on free loopback ports, each with its own
node file and an explicit cluster bus port (Redis' default, ``port + 10000``, is past 65535 for
an ephemeral port), then ``redis-cli --cluster create ... --cluster-yes`` assigns the slots, and
the cluster is ready once every node says ``cluster_state:ok``. A password goes in the nodes'
config file (``requirepass`` and ``masterauth``: a replica must authenticate to its master) and
reaches ``redis-cli`` through ``REDISCLI_AUTH``, never on a command line (``ps`` shows those).
Who runs the processes is the caller's business (supervisor for ``up``, the bench and tests
their own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from channels_scale.exceptions import ConfigError, StackError
from channels_scale.layer.cluster import parse_cluster_url
from channels_scale.layer.config import HostConfig
from channels_scale.layer.reach import Unreachable, reach_host
from channels_scale.net import free_port, timeout_factor, wait_until
from channels_scale.stack.preflight import find_binary
from channels_scale.stack.processes import stop_children

#: Redis Cluster needs at least three masters to elect (a majority must agree on a failover).
MIN_MASTERS = 3
#: how long a node may be silent before the others mark it failing (Redis' default is 15 s)
NODE_TIMEOUT_MS = 5000
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ClusterNode:
    """One node: its client port, its cluster bus port and its directory (node file, logs)."""

    port: int
    bus_port: int
    directory: Path

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def args(self, node_timeout_ms: int = NODE_TIMEOUT_MS) -> list[str]:
        """The cluster options of this node's ``redis-server`` command line."""
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.directory / "nodes.conf"),
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-port", str(self.bus_port),
        ]  # fmt: skip


def plan_nodes(count: int, root: Path) -> tuple[ClusterNode, ...]:
    """``count`` nodes on distinct free ports, in ``root/node-I`` (created)."""
    ports: list[int] = []
    while len(ports) < 2 * count:
        port = free_port(HOST)
        if port not in ports:
            ports.append(port)
    nodes = []
    for i in range(count):
        directory = root / f"node-{i}"
        directory.mkdir(parents=True, exist_ok=True)
        nodes.append(ClusterNode(ports[i], ports[count + i], directory))
    return tuple(nodes)


def cluster_url(nodes: Sequence[ClusterNode], password: str | None, seeds: int = 3) -> str:
    """The layer's ``redis+cluster://`` URL with the first ``seeds`` nodes as seeds."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis+cluster://{auth}" + ",".join(n.address for n in nodes[:seeds])


def _answers(url: str) -> bool:
    try:
        asyncio.run(reach_host(HostConfig(url), 2 * timeout_factor()))
    except Unreachable:
        return False
    return True


def create_cluster(
    cli: str,
    nodes: Sequence[ClusterNode],
    password: str | None,
    replicas: int = 0,
    timeout: float = 60,
) -> None:
    """Wait for every node to answer, make the cluster (``replicas`` per master), and wait for
    ``cluster_state:ok`` on every node.

    Raises:
        StackError: a node does not answer, ``redis-cli`` fails, or the state stays not ok.
    """
    auth = f":{quote(password, safe='')}@" if password else ""
    for node in nodes:
        node_url = f"redis://{auth}{node.address}/0"
        if not wait_until(lambda: _answers(node_url), timeout):  # noqa: B023 -- called right here
            raise StackError(f"Redis Cluster node {node.address} did not answer within {timeout} s")
    env = {**os.environ, "REDISCLI_AUTH": password} if password else None
    addresses = [n.address for n in nodes]
    try:
        done = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas),
             "--cluster-yes"],
            env=env, capture_output=True, timeout=timeout * timeout_factor(), check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise StackError(f"redis-cli --cluster create took over {timeout} s") from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()
        raise StackError(f"redis-cli --cluster create failed: {said[-1] if said else '?'}")
    url = f"redis+cluster://{auth}" + ",".join(addresses)  # every node a seed: all must be ok
    if not wait_until(lambda: _answers(url), timeout, interval=0.2):
        raise StackError(f"the Redis Cluster {','.join(addresses)} did not reach cluster_state:ok")


def find_redis_cli() -> str:
    """``redis-cli`` (it comes with redis-server); :class:`ConfigError` says how to get it."""
    cli = find_binary("redis-cli")
    if cli is None:
        raise ConfigError(
            "redis-cli is not installed (it makes the cluster): run ./scripts/install "
            "(or apt-get install redis-tools)"
        )
    return cli


def parse_topology(text: str) -> tuple[str, int]:
    """``single`` -> ``("single", 1)``; ``shards:3`` -> ``("shards", 3)``; ``cluster:3``.

    Raises:
        ValueError: another kind, a count below 1 (2 for shards), or below 3 for a cluster.
    """
    kind, _, count = text.strip().partition(":")
    if text.strip() == "single":
        return "single", 1
    if kind not in ("shards", "cluster") or not count.isdigit():
        raise ValueError(f"{text!r} is not single, shards:K or cluster:N")
    least = MIN_MASTERS if kind == "cluster" else 2
    if int(count) < least:
        raise ValueError(
            f"{kind}:{count} needs at least {least} {'masters' if kind == 'cluster' else 'shards'}"
        )
    return kind, int(count)


@contextlib.contextmanager
def redis_servers(count: int, root: Path) -> Iterator[list[tuple[str, int]]]:
    """``count`` plain private ``redis-server`` processes (no persistence, loopback), each
    ``(url, pid)``; stopped (by pid) on exit. The bench's ``shards:K`` topology runs on them."""
    binary = find_binary("redis-server")
    if binary is None:
        raise ConfigError("redis-server is not installed: run ./scripts/install")
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for i in range(count):
            port = free_port(HOST)
            directory = root / f"shard-{i}"
            directory.mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                 "--dir", str(directory), "--daemonize", "no", "--loglevel", "warning"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            started.append((proc, f"redis://{HOST}:{port}/0"))
        for proc, url in started:
            if not wait_until(lambda: _answers(url), 20):  # noqa: B023 -- called right here
                raise StackError(f"redis-server {url} did not answer (exit code {proc.poll()})")
        yield [(url, proc.pid) for proc, url in started]
    finally:
        stop_children((proc for proc, _ in started), 10 * timeout_factor())


def cluster_master_urls(url: str) -> list[str]:
    """A plain ``redis://`` URL for every master of the cluster at ``url`` (``CLUSTER SLOTS``
    asked of the first seed), with the seed's credentials: to meter each node."""
    import redis

    seeds = parse_cluster_url(url)
    with redis.Redis.from_url(seeds.node_url(seeds.addresses[0]), socket_timeout=5) as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    masters = dict.fromkeys(
        f"{m[0].decode() if isinstance(m[0], bytes) else m[0]}:{int(m[1])}" for _, _, m, *_ in slots
    )
    return [seeds.node_url(address) for address in masters]
