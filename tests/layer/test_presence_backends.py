"""Presence, the same suite against both brokers (Redis and in-memory)."""

from __future__ import annotations

import asyncio

import pytest

from channels_scale.presence import Presence, PresenceError
from tests.layer.conftest import LayerFactory


@pytest.fixture(params=["redis", "ours_memory"])
def factory(request: pytest.FixtureRequest) -> LayerFactory:
    made: LayerFactory = request.getfixturevalue(f"{request.param}_layer_factory")
    return made


async def test_tabs_count_once_join_and_leave(factory: LayerFactory) -> None:
    presence = Presence(factory(), ttl=30)
    ann, bob = {"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}
    assert await presence.join("room", "c1", ann)  # ann's first tab: she joined
    assert not await presence.join("room", "c2", ann)  # a second tab: no new join
    assert await presence.join("room", "c3", bob)
    assert await presence.members("room") == [
        {**ann, "connections": 2},
        {**bob, "connections": 1},
    ]
    assert await presence.connection_user("room", "c2") == ann
    assert await presence.leave("room", "c1") == []  # ann still has a tab
    assert await presence.leave("room", "c2", "c3") == [ann, bob]
    assert await presence.members("room") == []
    assert await presence.connection_user("room", "c2") is None
    assert await presence.refresh("room", {"c4": bob}) == [bob]  # back after a refresh


async def test_entries_not_refreshed_expire(factory: LayerFactory) -> None:
    presence = Presence(factory(), ttl=0.3)
    await presence.join("room", "dead", {"id": 7})
    await presence.join("room", "alive", {"id": 8})
    await asyncio.sleep(0.35)  # the behaviour under test is time itself
    await presence.refresh("room", {"alive": {"id": 8}})
    assert await presence.sweep("room") == [{"id": 7}]
    assert [u["id"] for u in await presence.members("room")] == [8]


async def test_user_info_needs_an_id(factory: LayerFactory) -> None:
    with pytest.raises(PresenceError):
        await Presence(factory()).join("room", "c", {"name": "anonymous"})
