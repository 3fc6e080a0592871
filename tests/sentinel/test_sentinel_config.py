"""The Sentinel backend's own checks: where it writes, and its errors for bad or unreachable
configs (one clear error naming the host, at first use)."""

from __future__ import annotations

import asyncio

import pytest

from channels_scale.exceptions import ConfigError, LayerUnavailable
from channels_scale.layer import RedisChannelLayer
from channels_scale.layer.sentinel import parse_sentinel_url
from channels_scale.net import free_port
from tests.layer.conftest import LayerFactory, scaled
from tests.sentinel.conftest import MASTER_NAME, SentinelTopology, command


def test_url_parsing() -> None:
    spec = parse_sentinel_url(
        "redis+sentinel://u:p%40ss@127.0.0.1:26379,[::1]:26380/mymaster?db=2"
        "&sentinel_password=sp&client_name=web"
    )
    assert spec.sentinels == (("127.0.0.1", 26379), ("::1", 26380))
    assert (spec.master_name, spec.db, spec.username, spec.password) == ("mymaster", 2, "u", "p@ss")
    assert spec.sentinel_password == "sp" and spec.options == {"client_name": "web"}
    assert "p@ss" not in spec.describe() and "sp" not in spec.describe()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://127.0.0.1:26379", "must name the master"),
        ("redis+sentinel://127.0.0.1:26379/", "must name the master"),
        ("redis+sentinel://127.0.0.1:x/m", "bad sentinel address"),
        ("redis+sentinel://127.0.0.1:1,/m", "bad sentinel address"),
        ("redis+sentinel://127.0.0.1:1/m?db=x", "db must be a number"),
    ],
)
def test_bad_urls_are_refused_at_once(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        RedisChannelLayer(hosts=[url])


async def test_writes_go_to_the_master(
    redis_layer_factory: LayerFactory, sentinel_topology: SentinelTopology
) -> None:
    layer = redis_layer_factory(history={"room": {"size": 10, "ttl": 60}})
    await layer.send("jobs", {"type": "job"})
    await layer.group_send("room", {"type": "m"})
    master = sentinel_topology.master_port()
    assert master == sentinel_topology.master.port
    keys = command(master, "KEYS", f"{layer.config.prefix}:*")
    assert any("queue" in key for key in keys) and any("room" in key for key in keys), keys
    role = command(sentinel_topology.replica.port, "ROLE")
    assert role[0] == "slave"  # the premise: the other server would refuse writes


async def test_unreachable_sentinels_name_the_host() -> None:
    ports = [free_port(), free_port()]
    url = f"redis+sentinel://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/{MASTER_NAME}"
    layer = RedisChannelLayer(hosts=[url], send_timeout=1)
    try:
        with pytest.raises(LayerUnavailable) as raised:
            async with asyncio.timeout(scaled(10)):
                await layer.group_send("g", {"type": "m"})
        text = str(raised.value)
        assert f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/{MASTER_NAME}" in text, text
        assert "gave the master's address" in text, text
    finally:
        await layer.close()


async def test_unknown_master_name_is_said(sentinel_topology: SentinelTopology) -> None:
    url = sentinel_topology.url.replace(MASTER_NAME, "nosuchmaster")
    layer = RedisChannelLayer(hosts=[url], send_timeout=1)
    try:
        with pytest.raises(LayerUnavailable, match="does not monitor a master named 'nosuch"):
            await layer.send("jobs", {"type": "job"})
    finally:
        await layer.close()
