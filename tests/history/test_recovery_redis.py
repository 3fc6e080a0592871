"""Recovery and presence against a real redis-server, through real consumers.

A publisher in another process writes thousands of numbered messages while a client connects,
drops and resumes from its last (epoch, offset) again and again; it must end up with every
message exactly once, in order. Redis restarted without persistence must make a resuming client
reload. Presence counts a user with two tabs once and announces joins and leaves.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from channels_scale.history.consumer import StreamConsumer
from channels_scale.layer import RedisChannelLayer
from channels_scale.net import timeout_factor
from channels_scale.presence import Presence, PresenceTracker, stop_trackers

# Our consumers check Django's DB connections around handlers (DB hygiene); a connection an
# earlier test left open in the DB thread makes that a database access under pytest-django.
pytestmark = pytest.mark.django_db(transaction=True)

PUBLISHER = Path(__file__).with_name("publisher.py")
WAIT = 5 * timeout_factor()


class RoomConsumer(StreamConsumer):
    """Follows group ``room.<g>`` from the query string; ``slow=1`` makes it a slow client."""

    async def connect(self) -> None:
        query = dict(
            part.split("=", 1) for part in self.scope["query_string"].decode().split("&") if part
        )
        self.slow = query.get("slow") == "1"
        await self.join_stream("room." + query["g"])

    async def stream_frame(self, event: dict[str, Any]) -> None:
        if self.slow:
            await asyncio.sleep(0.002)  # slower than the publisher: the local buffer overflows
        await super().stream_frame(event)

    def presence_user(self) -> dict[str, Any] | None:
        user = self.scope.get("test_user")
        return dict(user) if user else None


@pytest.fixture
def layer_settings(settings: Any, redis_server: Any) -> dict[str, Any]:
    prefix = "h" + uuid.uuid4().hex[:10]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_scale.layer.RedisChannelLayer",
            "CONFIG": {
                "hosts": [redis_server.url],
                "prefix": prefix,
                "capacity": 5,
                "history": {"room.*": {"size": 100_000, "ttl": 600}},
            },
        }
    }
    return {"url": redis_server.url, "prefix": prefix, "server": redis_server}


def client(query: str, user: dict[str, Any] | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(RoomConsumer.as_asgi(), "/ws/?" + query)
    if user is not None:
        communicator.scope["test_user"] = user
    return communicator


async def frames_until(communicator: WebsocketCommunicator, stop: Any) -> list[dict[str, Any]]:
    got = []
    while True:
        frame = json.loads(await communicator.receive_from(timeout=WAIT))
        got.append(frame)
        if stop(frame):
            return got


async def test_resume_under_concurrent_publishing_loses_and_duplicates_nothing(
    layer_settings: dict[str, Any],
) -> None:
    total, group = 3000, "r1"
    first = client(f"g={group}")
    assert (await first.connect(timeout=WAIT))[0]
    welcome = json.loads(await first.receive_from(timeout=WAIT))
    assert welcome["type"] == "welcome"
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, str(PUBLISHER), layer_settings["url"], layer_settings["prefix"],
        "room." + group, str(total),
    )  # fmt: skip
    try:
        received: list[int] = []
        position: tuple[str, int] | None = None
        communicator = first
        connections = 1
        while not received or received[-1] < total:
            # Take a random-ish slice of messages, then drop the connection and resume.
            take = 150 + 37 * connections
            for _ in range(take):
                frame = json.loads(await communicator.receive_from(timeout=WAIT))
                assert "type" not in frame, frame  # no reload: the history covers every gap
                received.append(frame["data"]["n"])
                position = (frame["epoch"], frame["offset"])
                assert frame["offset"] == frame["data"]["n"]
                if received[-1] == total:
                    break
            await communicator.disconnect(timeout=WAIT)
            if received[-1] == total:
                break
            assert position is not None
            communicator = client(f"g={group}&epoch={position[0]}&offset={position[1]}")
            assert (await communicator.connect(timeout=WAIT))[0]
            assert json.loads(await communicator.receive_from(timeout=WAIT))["type"] == "welcome"
            connections += 1
        assert await asyncio.wait_for(publisher.wait(), 60 * timeout_factor()) == 0
    finally:
        if publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
    assert connections >= 5
    start = received[0]
    assert received == list(range(start, total + 1)), "a gap or a duplicate"


async def test_slow_client_overflowing_its_buffer_still_gets_everything_once(
    layer_settings: dict[str, Any],
) -> None:
    from channels.layers import get_channel_layer

    total, group = 600, "slow"
    communicator = client(f"g={group}&slow=1")
    assert (await communicator.connect(timeout=WAIT))[0]
    await communicator.receive_from(timeout=WAIT)  # welcome
    done = await asyncio.create_subprocess_exec(
        sys.executable, str(PUBLISHER), layer_settings["url"], layer_settings["prefix"],
        "room." + group, str(total), "1000",
    )  # fmt: skip
    assert await asyncio.wait_for(done.wait(), 60 * timeout_factor()) == 0
    frames = await frames_until(communicator, lambda f: f.get("offset") == total)
    await communicator.disconnect(timeout=WAIT)
    numbers = [f["data"]["n"] for f in frames]
    assert numbers == list(range(1, total + 1))
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    assert layer.stats()["dropped_overflow"] > 0, "the buffer never overflowed: test is moot"


async def test_redis_restart_without_persistence_makes_a_resuming_client_reload(
    layer_settings: dict[str, Any],
) -> None:
    from channels.layers import get_channel_layer

    from channels_scale.history.consumer import publish

    layer = get_channel_layer()
    for n in range(1, 6):
        await publish(layer, "room.e", {"n": n})
    state, items = await layer.group_history("room.e", after=2)
    assert [o for o, _ in items] == [3, 4, 5]
    old_epoch = state.epoch

    # Same epoch: resuming from 3 replays 4 and 5.
    resumed = client(f"g=e&epoch={old_epoch}&offset=3")
    assert (await resumed.connect(timeout=WAIT))[0]
    frames = await frames_until(resumed, lambda f: f.get("offset") == 5)
    assert [f["data"]["n"] for f in frames if "data" in f] == [4, 5]
    await resumed.disconnect(timeout=WAIT)

    layer_settings["server"].restart()  # no RDB, no AOF: the stream and the epoch are gone
    stale = client(f"g=e&epoch={old_epoch}&offset=5")
    assert (await stale.connect(timeout=WAIT))[0]
    frames = await frames_until(stale, lambda f: f.get("type") == "reload")
    reload = frames[-1]
    assert reload["reason"] == "epoch" and reload["epoch"] != old_epoch
    await publish(layer, "room.e", {"n": "after restart"})
    live = await frames_until(stale, lambda f: "data" in f)
    assert live[-1]["epoch"] == reload["epoch"] and live[-1]["offset"] == reload["offset"] + 1
    await stale.disconnect(timeout=WAIT)


async def test_presence_counts_tabs_once_and_announces_join_and_leave(
    layer_settings: dict[str, Any],
) -> None:
    alice, bob = {"id": 1, "name": "alice"}, {"id": 2, "name": "bob"}
    watcher = client("g=p", bob)
    assert (await watcher.connect(timeout=WAIT))[0]
    state = await frames_until(watcher, lambda f: f.get("type") == "presence.state")
    assert [u["name"] for u in state[-1]["users"]] == ["bob"]

    own = await frames_until(watcher, lambda f: f.get("type") == "presence")
    assert (own[-1]["event"], own[-1]["user"]["name"]) == ("join", "bob")  # everyone is told

    tab1, tab2 = client("g=p", alice), client("g=p", alice)
    assert (await tab1.connect(timeout=WAIT))[0]
    joined = await frames_until(watcher, lambda f: f.get("type") == "presence")
    assert joined[-1]["event"] == "join" and joined[-1]["user"]["name"] == "alice"
    assert (await tab2.connect(timeout=WAIT))[0]
    listed = await frames_until(tab2, lambda f: f.get("type") == "presence.state")
    users = {u["name"]: u["connections"] for u in listed[-1]["users"]}
    assert users == {"alice": 2, "bob": 1}
    assert await watcher.receive_nothing(timeout=0.3 * timeout_factor())  # second tab: no event

    await tab1.disconnect(timeout=WAIT)
    assert await watcher.receive_nothing(timeout=0.3 * timeout_factor())  # alice still here
    await tab2.disconnect(timeout=WAIT)
    left = await frames_until(watcher, lambda f: f.get("type") == "presence")
    assert left[-1]["event"] == "leave" and left[-1]["user"]["name"] == "alice"
    await watcher.disconnect(timeout=WAIT)
    await stop_trackers()


async def test_a_dead_workers_entries_expire_and_a_live_worker_announces_the_leave(
    layer_settings: dict[str, Any],
) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    ttl = 0.6
    presence = Presence(layer, ttl)
    # A worker that died: it joined, then never refreshed.
    assert await presence.join("room.d", "dead-worker-conn", {"id": 7, "name": "ghost"})
    watcher_channel = await layer.new_channel()
    await layer.group_add("room.d", watcher_channel)
    # A live worker with one connection of its own keeps beating (and sweeping).
    tracker = PresenceTracker(presence)
    tracker.add("room.d", "live-conn", {"id": 8, "name": "alive"})
    await presence.join("room.d", "live-conn", {"id": 8, "name": "alive"})
    try:
        event = await asyncio.wait_for(layer.receive(watcher_channel), ttl * 4 * timeout_factor())
        assert event["type"] == "presence.event"
        assert (event["event"], event["user"]["name"]) == ("leave", "ghost")
        assert [u["name"] for u in await presence.members("room.d")] == ["alive"]
    finally:
        tracker.discard("room.d", "live-conn")
        if tracker._task is not None:
            tracker._task.cancel()
