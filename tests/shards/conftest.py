"""Three standalone redis-servers on free ports: the layer's K-shards topology (jump hash)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RedisProcess, redis_servers
from tests.shared_suites import (  # noqa: F401 -- the fixtures, used on layer_hosts below
    factory,
    layer,
    layer_factory,
    pair_layer_factory,
    redis_layer_factory,
)

SHARDS = 3


@pytest.fixture(scope="session")
def redis_shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisProcess]]:
    with redis_servers(tmp_path_factory, "shard", SHARDS) as servers:
        yield servers


@pytest.fixture
def layer_hosts(redis_shards: list[RedisProcess]) -> list[str]:
    return [server.url for server in redis_shards]
