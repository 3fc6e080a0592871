"""Presence lives in the layer's lifecycle: one tracker per layer and loop, closed with it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from channels_scale.layer import RedisChannelLayer
from channels_scale.presence import PresenceError, tracker_for


async def test_one_ttl_per_layer_and_the_tracker_closes_with_the_layer(shared_redis: Any) -> None:
    layer = RedisChannelLayer(hosts=[shared_redis.url], prefix=f"p{uuid.uuid4().hex[:10]}")
    tracker = tracker_for(layer, ttl=3.0)
    assert tracker_for(layer, ttl=3.0) is tracker
    with pytest.raises(PresenceError, match="one ttl per layer"):
        tracker_for(layer, ttl=9.0)  # was: silently ignored
    tracker.add("room", "conn-1", {"id": 1})
    assert await tracker.presence.join("room", "conn-1", {"id": 1})
    task = tracker._task
    assert task is not None and not task.done()
    await layer.close()
    assert task.done()  # the layer stopped the heartbeat it owns
    assert tracker_for(layer, ttl=9.0) is not tracker  # a new loop layer, a new tracker
    await layer.flush()
    await layer.close()
