"""The cluster fixture itself: the premise of every other test here."""

from __future__ import annotations

from tests.cluster.conftest import RedisCluster


def test_three_masters_cover_every_slot(redis_cluster: RedisCluster) -> None:
    with redis_cluster.client(redis_cluster.nodes[0]) as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    assert sum(end - start + 1 for start, end, *_ in slots) == 16384
    assert len({tuple(master[:2]) for _, _, master, *_ in slots}) == 3
    assert all(len(entry) == 4 for entry in slots)  # master + one replica per range
