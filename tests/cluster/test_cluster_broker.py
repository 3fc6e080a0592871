"""The cluster broker's own behaviour: slots, URLs, sharded pub/sub only, one subscribing
connection per node, clear errors; and a slot of a busy group resharded under traffic."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from channels_scale.exceptions import ConfigError, LayerUnavailable
from channels_scale.layer import RedisChannelLayer
from channels_scale.layer.cluster import key_slot, parse_cluster_url, parse_redirect
from channels_scale.net import free_port
from tests.cluster.conftest import RedisCluster
from tests.conftest import RedisProcess
from tests.layer.conftest import LayerFactory, scaled, wait_for_value
from tests.layer.test_contract import recv


def test_key_slots_match_redis(redis_cluster: RedisCluster) -> None:
    names = ["", "a", "room.1", "asgi:group:{room.1}", "x{}y", "{}{a}", "a{b}c{d}", "ü{z"]
    with redis_cluster.client(redis_cluster.nodes[0]) as client:
        for name in names:
            assert key_slot(name) == client.execute_command("CLUSTER", "KEYSLOT", name), name
    assert key_slot("asgi:stream:{g}") == key_slot("asgi:presence:{g}") == key_slot("{g}")


def test_cluster_urls() -> None:
    seeds = parse_cluster_url(
        "rediss+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001?ssl_cert_reqs=none"
    )
    assert seeds.addresses == ("10.0.0.1:7000", "10.0.0.2:7001")
    assert seeds.node_url("10.0.0.3:7002") == "rediss://u:p%40ss@10.0.0.3:7002/0?ssl_cert_reqs=none"
    assert seeds.describe() == "rediss+cluster://10.0.0.1:7000,10.0.0.2:7001"
    assert parse_redirect("MOVED 3999 127.0.0.1:6381") == ("MOVED", 3999, "127.0.0.1:6381")
    assert parse_redirect("ERR wrong") is None
    with pytest.raises(ConfigError, match="host:port"):
        RedisChannelLayer(hosts=["redis+cluster://10.0.0.1"])
    with pytest.raises(ConfigError, match="no databases"):
        RedisChannelLayer(hosts=["redis+cluster://10.0.0.1:7000/2"])
    with pytest.raises(ConfigError, match="only entry"):
        RedisChannelLayer(hosts=["redis+cluster://10.0.0.1:7000", "redis://10.0.0.2:6379"])


async def test_unreachable_seed_named_in_one_error() -> None:
    port = free_port()
    layer = RedisChannelLayer(hosts=[f"redis+cluster://127.0.0.1:{port}"], send_timeout=0.5)
    with pytest.raises(LayerUnavailable, match=f"127.0.0.1:{port}"):
        await layer.group_send("g", {"type": "m"})
    await layer.close()


async def test_a_single_redis_is_not_a_cluster(shared_redis: RedisProcess) -> None:
    layer = RedisChannelLayer(hosts=[f"redis+cluster://127.0.0.1:{shared_redis.port}"])
    with pytest.raises(ConfigError, match=f"127.0.0.1:{shared_redis.port} .*not a Redis Cluster"):
        await layer.group_send("g", {"type": "m"})
    await layer.close()


def _node_stats(cluster: RedisCluster, name: str) -> list[tuple[int, int, int]]:
    """Per running master: (PUBLISH calls, SPUBLISH calls, connections named ``name`` with
    shard subscriptions, their shard subscriptions in total)."""
    rows = []
    for node in cluster.nodes:
        if node.proc is None:
            continue
        with cluster.client(node) as client:
            if client.info("replication")["role"] != "master":
                continue
            stats = client.info("commandstats")
            subscribers = [c for c in client.client_list() if c["name"] == name and int(c["ssub"])]
            rows.append(
                (
                    stats.get("cmdstat_publish", {}).get("calls", 0),
                    len(subscribers),
                    sum(int(c["ssub"]) for c in subscribers),
                )
            )
    return rows


async def test_groups_on_every_master_one_subscriber_connection_each(
    redis_cluster: RedisCluster,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    url = f"{redis_cluster.url}?client_name={prefix}"
    sender = RedisChannelLayer(hosts=[redis_cluster.url], prefix=prefix)
    receiver = RedisChannelLayer(hosts=[url], prefix=prefix)
    channel = await receiver.new_channel()
    groups = [f"g{i}" for i in range(30)]
    for group in groups:
        await receiver.group_add(group, channel)
    for group in groups:
        await sender.group_send(group, {"type": "m", "g": group})
    assert sorted([(await recv(receiver, channel))["g"] for _ in groups]) == sorted(groups)
    rows = _node_stats(redis_cluster, prefix)
    assert len(rows) == 3
    assert all(publish == 0 for publish, _, _ in rows)  # classic PUBLISH floods every node
    assert all(connections == 1 for _, connections, _ in rows)  # one per node, all in use
    # 30 groups + the inbox + the flush channel, spread over the three readers
    assert sum(channels for _, _, channels in rows) == 32
    await receiver.group_discard("g0", channel)
    await wait_for_value(lambda: sum(c for _, _, c in _node_stats(redis_cluster, prefix)) == 31)
    for layer in (sender, receiver):
        await layer.flush()
        await layer.close()


def _migrate_slot(cluster: RedisCluster, slot: int) -> None:
    """Move ``slot`` to another master the way ``redis-cli --cluster reshard`` does."""
    masters = {}
    for node in cluster.nodes:
        with cluster.client(node) as client:
            if client.info("replication")["role"] == "master":
                masters[node.port] = client.execute_command("CLUSTER", "MYID").decode()
    with cluster.client(cluster.nodes[0]) as client:
        owner = next(
            int(m[1])
            for s, e, m, *_ in client.execute_command("CLUSTER", "SLOTS")
            if s <= slot <= e
        )
    target = next(port for port in masters if port != owner)
    with (
        cluster.client(RedisProcessAt(target)) as dst,
        cluster.client(RedisProcessAt(owner)) as src,
    ):
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", masters[owner])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", masters[target])
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for port in masters:
            with cluster.client(RedisProcessAt(port)) as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", masters[target])


class RedisProcessAt:
    """Just a port, for :meth:`RedisCluster.client`."""

    def __init__(self, port: int) -> None:
        self.port = port


async def test_resharding_a_busy_group_loses_nothing_for_history(
    redis_cluster: RedisCluster, redis_layer_factory: LayerFactory
) -> None:
    group = f"room.{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {
        "prefix": f"t{uuid.uuid4().hex[:8]}",
        "history": {"room.*": {"size": 10_000, "ttl": 600}},
    }
    sender, receiver = redis_layer_factory(**config), redis_layer_factory(**config)
    channel = await receiver.new_channel()
    await receiver.group_add(group, channel)
    acked: list[int] = []
    got: list[int] = []
    stop = asyncio.Event()

    async def send_all() -> None:
        n = 0
        while not stop.is_set():
            await sender.group_send(group, {"type": "m", "n": n})
            acked.append(n)
            n += 1
            await asyncio.sleep(0.005)

    async def receive_all() -> None:
        while True:
            got.append((await receiver.receive(channel))["n"])

    sending = asyncio.create_task(send_all())
    reading = asyncio.create_task(receive_all())
    try:
        await wait_for_value(lambda: len(got) >= 30)
        await asyncio.to_thread(_migrate_slot, redis_cluster, key_slot(f"{{{group}}}"))
        count = len(acked)
        await wait_for_value(lambda: len(got) > 0 and got[-1] > count + 30)
        stop.set()
        await asyncio.wait_for(sending, scaled(20))
        await wait_for_value(lambda: got[-1] == acked[-1])
        assert not reading.done()  # receive() never raised
    finally:
        stop.set()
        sending.cancel()
        reading.cancel()
    lost = set(range(acked[-1] + 1)) - set(got)
    print(f"\nresharding under traffic: {len(acked)} sent, {len(lost)} lost live")
    assert receiver.stats()["lost_gap"] == len(lost)
    assert got == sorted(set(got))
    _, stored = await receiver.group_history(group, 0, 10_000)
    assert [message["n"] for _, message in stored] == acked  # a recovering client gets all


async def test_readiness_ping_and_user_limits_with_a_cluster_url(
    redis_cluster: RedisCluster, settings: Any
) -> None:
    from channels_scale.asgi import ping_redis_hosts
    from channels_scale.consumers.guard import limits_redis_url

    config = {"BACKEND": "channels_scale.layer.RedisChannelLayer"}
    await ping_redis_hosts({**config, "CONFIG": {"hosts": [redis_cluster.url]}})
    dead = f"redis+cluster://127.0.0.1:{redis_cluster.nodes[0].port},127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError, match="does not answer"):
        await ping_redis_hosts({**config, "CONFIG": {"hosts": [dead]}})
    settings.CHANNEL_LAYERS = {"default": {**config, "CONFIG": {"hosts": [redis_cluster.url]}}}
    assert limits_redis_url() is None  # a plain client on a cluster node would get MOVED
