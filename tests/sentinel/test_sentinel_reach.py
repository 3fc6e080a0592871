"""``up --redis redis+sentinel://...``'s preflight and the workers' ``/readyz`` ping on a real
Sentinel topology: the master Sentinel names is reached; a name no sentinel knows is one line
naming the sentinels, without the password."""

from __future__ import annotations

import pytest

from channels_scale.asgi import ping_redis_hosts
from channels_scale.exceptions import ConfigError
from channels_scale.settings import channel_layer_config
from channels_scale.stack.preflight import check_redis
from tests.sentinel.conftest import SentinelTopology


def _unknown_master(topology: SentinelTopology) -> str:
    url = topology.url.replace("redis+sentinel://", "redis+sentinel://:secret@")
    return url.rsplit("/", 1)[0] + "/nosuchmaster"


def test_preflight_reaches_the_master(sentinel_topology: SentinelTopology) -> None:
    check_redis(sentinel_topology.url)  # raises when the sentinels or the master do not answer
    with pytest.raises(ConfigError) as raised:
        check_redis(_unknown_master(sentinel_topology))
    line = str(raised.value)
    assert "does not monitor a master named 'nosuchmaster'" in line, line
    assert "secret" not in line and len(line.splitlines()) == 1


async def test_readyz_ping_reaches_the_master(sentinel_topology: SentinelTopology) -> None:
    await ping_redis_hosts(channel_layer_config("channels_scale", sentinel_topology.url))
    unknown = channel_layer_config("channels_scale", _unknown_master(sentinel_topology))
    with pytest.raises(ConnectionError, match="nosuchmaster"):
        await ping_redis_hosts(unknown)
