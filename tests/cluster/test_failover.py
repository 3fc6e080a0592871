"""A master failover under group traffic, on a private cluster: two layer instances (two
processes' worth of connections), the master of the group's slot killed by pid (SIGKILL).

Measured: the time from the kill to the first message delivered after it. Target: the
cluster's node timeout + 3 s. No receive() may raise; what the receiver lost is counted by the
layer (lost_gap) and equals what it is missing; history holds every acknowledged message once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from channels_scale.layer import RedisChannelLayer
from tests.cluster.conftest import NODE_TIMEOUT_MS, RedisCluster
from tests.conftest import RedisProcess
from tests.layer.conftest import scaled, wait_for_value

GROUP = "room.failover"


def new_master_seen(cluster: RedisCluster, old: RedisProcess) -> float:
    """When a surviving node first names another master for the group's slot (monotonic)."""
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        if cluster.master_of(f"{{{GROUP}}}") is not old:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError("no replica was promoted")


async def test_master_killed_delivery_resumes_and_history_has_everything_once(
    private_cluster: RedisCluster,
) -> None:
    config: dict[str, Any] = {
        "hosts": [private_cluster.url],
        "prefix": "fo",
        "history": {"room.*": {"size": 10_000, "ttl": 600}},
        "send_timeout": 15,
    }
    sender, receiver = RedisChannelLayer(**config), RedisChannelLayer(**config)
    channel = await receiver.new_channel()
    await receiver.group_add(GROUP, channel)
    got: list[tuple[float, int, int]] = []  # (received at, n, offset)
    acked: list[int] = []
    errors: list[BaseException] = []

    async def receive_all() -> None:
        try:
            while True:
                message = await receiver.receive(channel)
                got.append((time.monotonic(), message["n"], message["_offset"]))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the test fails on any exception reaching receive()
            errors.append(exc)

    stop = asyncio.Event()

    async def send_all() -> None:
        n = 0
        while not stop.is_set():
            await sender.group_send(GROUP, {"type": "m", "n": n})
            acked.append(n)
            n += 1
            await asyncio.sleep(0.01)

    reading = asyncio.create_task(receive_all())
    sending = asyncio.create_task(send_all())
    try:
        await wait_for_value(lambda: len(got) >= 50)
        victim = private_cluster.master_of(f"{{{GROUP}}}")
        victim.stop(kill=True)
        killed_at = time.monotonic()
        promoted = asyncio.create_task(asyncio.to_thread(new_master_seen, private_cluster, victim))
        last_before = acked[-1] if acked else -1
        await wait_for_value(lambda: any(n > last_before + 1 for _, n, _ in got), within=30)
        resumed_at = next(t for t, n, _ in got if n > last_before + 1)
        count = len(got)
        await wait_for_value(lambda: len(got) >= count + 50)
        stop.set()
        await asyncio.wait_for(sending, scaled(20))
        await wait_for_value(lambda: bool(got) and got[-1][1] == acked[-1])
    finally:
        stop.set()
        sending.cancel()
        reading.cancel()
    resume = resumed_at - killed_at
    cluster_failover = await promoted - killed_at
    print(
        f"\nfailover: replica promoted {cluster_failover:.2f} s after the kill, delivery resumed "
        f"{resume:.2f} s after it ({len(acked)} sent, {receiver.stats()['lost_gap']} lost live)"
    )
    assert not errors
    assert resume <= scaled(NODE_TIMEOUT_MS / 1000 + 3)  # the target
    assert resume - cluster_failover <= scaled(1.5)  # the layer's own part: map polling
    received = [n for _, n, _ in got]
    assert received == sorted(set(received))  # in order, no duplicate
    missing = set(range(acked[-1] + 1)) - set(received)
    assert receiver.stats()["lost_gap"] == len(missing)

    # a recovering reader: history from the start holds every acknowledged message once
    _state, stored = await receiver.group_history(GROUP, 0, 10_000)
    ns = [message["n"] for _, message in stored]
    assert ns == acked
    assert [offset for offset, _ in stored] == list(range(1, len(acked) + 1))
    await sender.close()
    await receiver.close()
