"""K shards: every operation of one name lands on the shard the jump hash gives it, checked on
the shards themselves (their keys and ``PUBSUB NUMSUB``), from two layer instances."""

from __future__ import annotations

import uuid

import redis

from channels_scale.layer import RedisChannelLayer
from channels_scale.layer.sharding import ShardRouter
from channels_scale.presence import Presence
from tests.conftest import RedisProcess
from tests.layer.conftest import wait_for_value

NAMES = [f"room{i}" for i in range(12)]


def _client(server: RedisProcess) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)


async def test_every_operation_of_a_name_on_one_shard(redis_shards: list[RedisProcess]) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    config = {
        "hosts": [s.url for s in redis_shards],
        "prefix": prefix,
        "history": {"room*": {"size": 10, "ttl": 60}},
    }
    sender, receiver = RedisChannelLayer(**config), RedisChannelLayer(**config)
    clients = [_client(s) for s in redis_shards]
    try:
        presence = Presence(sender, ttl=30)
        for name in NAMES:
            member = await receiver.new_channel()
            await receiver.group_add(name, member)  # SUBSCRIBE to the group's channel
            await sender.group_add(name, f"{name}.worker")  # a normal channel: the gq record
            await sender.group_send(name, {"type": "m"})  # stream, epoch, offset, idempotency
            await sender.send(name, {"type": "job"})  # a queue named like the group
            await presence.join(name, "conn-1", {"id": "u1"})
            await sender.group_history(name, 0, 10)
        expected = {name: ShardRouter(len(redis_shards)).shard_for(name) for name in NAMES}
        assert len(set(expected.values())) == len(redis_shards)  # premise: names spread out

        for name, home in expected.items():
            tagged = [set(c.keys(f"{prefix}:*{{{name}}}*")) for c in clients]
            kinds = {key.split(":")[1] for key in tagged[home]}
            assert {"gq", "queue", "idem"} <= kinds, (name, tagged[home])
            assert len(tagged[home]) >= 8, tagged[home]  # + history (3) and presence keys
            for index, keys in enumerate(tagged):
                if index != home:
                    assert not keys, (name, index, keys)
            channel = f"{prefix}:group:{{{name}}}"

            def subscribed_on(index: int, channel: str = channel) -> int:
                return int(clients[index].pubsub_numsub(channel)[0][1])

            await wait_for_value(lambda h=home: subscribed_on(h) == 1)  # type: ignore[misc]
            assert [subscribed_on(i) for i in range(len(clients)) if i != home] == [0, 0]
    finally:
        await sender.flush()
        await sender.close()
        await receiver.close()
        for client in clients:
            client.close()
