"""Fixtures for the layer tests: our layer on a real Redis, and Channels' in-memory reference."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from channels_scale.layer import RedisChannelLayer
from channels_scale.net import timeout_factor


def scaled(seconds: float) -> float:
    """A timeout scaled by ``CHANNELS_SCALE_TIMEOUT_FACTOR``."""
    return seconds * timeout_factor()


LayerFactory = Callable[..., Any]


@pytest.fixture
async def redis_layer_factory(shared_redis: Any) -> AsyncIterator[LayerFactory]:
    """Make ``RedisChannelLayer`` instances on the shared Redis, each under a fresh prefix."""
    made: list[RedisChannelLayer] = []

    def make(**config: Any) -> RedisChannelLayer:
        config.setdefault("hosts", [shared_redis.url])
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


@pytest.fixture(params=["memory", "redis"])
def layer_factory(request: pytest.FixtureRequest) -> LayerFactory:
    """The contract suite's implementations: the reference first, then ours."""
    if request.param == "memory":
        return make_memory_layer
    factory: LayerFactory = request.getfixturevalue("redis_layer_factory")
    return factory


@pytest.fixture
def layer(layer_factory: LayerFactory) -> Any:
    """One layer with default settings."""
    return layer_factory()
