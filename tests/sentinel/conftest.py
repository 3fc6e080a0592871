"""A real Sentinel topology on free loopback ports: a master, a replica and three sentinels.

``sentinel_topology`` (session scope) serves the shared suites; a test that kills the master
makes its own :class:`SentinelTopology` (``private_sentinel_topology``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from channels_scale.net import wait_until
from tests.conftest import RedisProcess
from tests.shared_suites import (  # noqa: F401 -- the fixtures, used on layer_hosts below
    factory,
    layer,
    layer_factory,
    pair_layer_factory,
    redis_layer_factory,
)

MASTER_NAME = "mymaster"
#: how long a master must be silent before a sentinel calls it down, ms
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def command(port: int, *args: str) -> Any:
    """One command to a local server, answered through redis-py's sync client (test side)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def _try(port: int, *args: str) -> Any:
    try:
        return command(port, *args)
    except Exception:  # any failure means "not yet" while polling
        return None


class SentinelProcess(RedisProcess):
    """``redis-server <conf> --sentinel`` watching ``master_port``; the file is its own (Sentinel
    rewrites it)."""

    def __init__(self, workdir: Path, master_port: int) -> None:
        super().__init__(workdir)
        self.master_port = master_port

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run ./scripts/install")
        conf = self.workdir / f"sentinel-{self.port}.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.proc = subprocess.Popen(
            [binary, str(conf), "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_until(self._answers, 10):
            self.stop()
            pytest.fail(f"sentinel did not answer on port {self.port}")


class SentinelTopology:
    """Master + replica + 3 sentinels; :meth:`start` returns once every sentinel sees the
    replica and the two other sentinels (a failover needs both)."""

    def __init__(self, workdir: Path) -> None:
        self.master = RedisProcess(workdir / "master")
        self.replica = RedisProcess(
            workdir / "replica",
            extra_args=["--replicaof", "127.0.0.1", str(self.master.port)],
        )
        self.sentinels = [SentinelProcess(workdir / f"s{i}", self.master.port) for i in range(3)]
        for server in (self.master, self.replica, *self.sentinels):
            server.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}"

    def master_port(self) -> int | None:
        """The port the first answering sentinel names as master now."""
        for sentinel in self.sentinels:
            reply = _try(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            if reply:
                return int(reply[1])
        return None

    def _replica_synced(self) -> bool:
        info = _try(self.replica.port, "INFO", "replication")
        return isinstance(info, dict) and info.get("master_link_status") == "up"

    def _ready(self) -> bool:
        for sentinel in self.sentinels:
            info = _try(sentinel.port, "SENTINEL", "MASTER", MASTER_NAME)
            if not info:
                return False
            if isinstance(info, list):
                info = dict(zip(info[::2], info[1::2], strict=True))
            if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < 2:
                return False
        return True

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        if not wait_until(self._replica_synced, 15):
            self.stop()
            pytest.fail("the replica did not sync with the master")
        for sentinel in self.sentinels:
            sentinel.start()
        if not wait_until(self._ready, 30):
            self.stop()
            pytest.fail("the sentinels did not find the replica and each other")

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.stop(kill=True)


@pytest.fixture(scope="session")
def sentinel_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    """One master + replica + 3 sentinels for the tests that do not fail it over."""
    topology = SentinelTopology(tmp_path_factory.mktemp("sentinel"))
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def private_sentinel_topology(tmp_path: Path) -> Iterator[SentinelTopology]:
    """A topology of its own, for a test that kills its master."""
    topology = SentinelTopology(tmp_path)
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


# -- the shared suites' factories, on the Sentinel backend ----------------------------------------


@pytest.fixture
def layer_hosts(sentinel_topology: SentinelTopology) -> list[str]:
    return [sentinel_topology.url]
