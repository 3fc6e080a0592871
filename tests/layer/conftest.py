"""Fixtures for the layer tests: our layer on a real Redis, and Channels' in-memory reference."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from channels_scale.layer import InMemoryChannelLayer as OursInMemory
from channels_scale.layer import RedisChannelLayer
from channels_scale.net import timeout_factor


def scaled(seconds: float) -> float:
    """A timeout scaled by ``CHANNELS_SCALE_TIMEOUT_FACTOR``."""
    return seconds * timeout_factor()


LayerFactory = Callable[..., Any]


async def wait_for_value(predicate: Callable[[], bool], within: float = 10) -> None:
    """Poll ``predicate`` (a plain function) until it is true, bounded."""
    async with asyncio.timeout(scaled(within)):
        while not predicate():  # noqa: ASYNC110 -- state changed by Redis, no event to await
            await asyncio.sleep(0.02)


@pytest.fixture
def layer_hosts(shared_redis: Any) -> list[str]:
    """The ``hosts`` of the Redis layers made here (other topologies override this fixture)."""
    return [shared_redis.url]


@pytest.fixture
async def redis_layer_factory(layer_hosts: list[str]) -> AsyncIterator[LayerFactory]:
    """Make ``RedisChannelLayer`` instances on ``layer_hosts``, each under a fresh prefix."""
    made: list[RedisChannelLayer] = []

    def make(**config: Any) -> RedisChannelLayer:
        config.setdefault("hosts", list(layer_hosts))
        config.setdefault("prefix", f"t{uuid.uuid4().hex[:10]}")
        layer = RedisChannelLayer(**config)
        made.append(layer)
        return layer

    yield make
    for layer in made:
        await layer.flush()
        await layer.close()


def make_memory_layer(**config: Any) -> InMemoryChannelLayer:
    layer = InMemoryChannelLayer(**config)
    # Channels' in-memory layer stores channel_capacity uncompiled (its get_capacity then fails)
    layer.channel_capacity = layer.compile_capacities(config.get("channel_capacity") or {})
    return layer


class LayerPair:
    """Two layer instances on one Redis and one prefix, standing for two processes.

    Channels are made alternately by ``here`` and ``there``, so a group has members in both;
    every other call (send, group_add/discard, group_send, flush) is made by ``here``, so half of
    them concern the other process' channels and travel through Redis. ``receive`` is served by
    the channel's owner (any one of them for a normal channel: queue semantics).
    """

    def __init__(self, here: RedisChannelLayer, there: RedisChannelLayer) -> None:
        self.here = here
        self.there = there
        self._made = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.here, name)

    async def new_channel(self, prefix: str = "specific.") -> str:
        self._made += 1
        owner = self.there if self._made % 2 else self.here
        return await owner.new_channel(prefix)

    async def receive(self, channel: str) -> Any:
        owner = self.here
        if "!" in channel and self.there.owns(channel):
            owner = self.there
        return await owner.receive(channel)


@pytest.fixture
def pair_layer_factory(redis_layer_factory: LayerFactory) -> LayerFactory:
    """Make a :class:`LayerPair`; both instances get the same config and prefix."""

    def make(**config: Any) -> LayerPair:
        config.setdefault("prefix", f"t{uuid.uuid4().hex[:10]}")
        return LayerPair(redis_layer_factory(**config), redis_layer_factory(**config))

    return make


@pytest.fixture
async def ours_memory_layer_factory() -> AsyncIterator[LayerFactory]:
    """Make our layer with the in-memory broker (no Redis)."""
    made: list[RedisChannelLayer] = []

    def make(**config: Any) -> RedisChannelLayer:
        layer = OursInMemory(**config)
        made.append(layer)
        return layer

    yield make
    for layer in made:
        await layer.close()


@pytest.fixture(params=["memory", "ours_memory", "redis", "pair"])
def layer_factory(request: pytest.FixtureRequest) -> LayerFactory:
    """The contract suite's implementations: the reference (Channels' in-memory layer) first,
    then ours with the in-memory broker, on Redis (one instance, and two standing for two
    processes)."""
    if request.param == "memory":
        return make_memory_layer
    factory: LayerFactory = request.getfixturevalue(f"{request.param}_layer_factory")
    return factory


@pytest.fixture
def layer(layer_factory: LayerFactory) -> Any:
    """One layer with default settings."""
    return layer_factory()
