"""The shared layer suites' fixtures for another topology: a test directory imports these into
its conftest.py, defines ``layer_hosts``, and imports the suites' test functions (see
tests/sentinel and tests/shards). The layer's own Redis factories come from tests/layer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.layer.conftest import LayerFactory, pair_layer_factory, redis_layer_factory

__all__ = ["factory", "layer", "layer_factory", "pair_layer_factory", "redis_layer_factory"]


@pytest.fixture(params=["redis", "pair"])
def layer_factory(request: pytest.FixtureRequest) -> LayerFactory:
    """The contract suite on the topology: one instance, and two standing for two processes."""
    made: LayerFactory = request.getfixturevalue(f"{request.param}_layer_factory")
    return made


@pytest.fixture
def layer(layer_factory: LayerFactory) -> Any:
    """One layer with default settings."""
    return layer_factory()


@pytest.fixture
def factory(redis_layer_factory: LayerFactory) -> LayerFactory:
    """The history and presence suites' factory."""
    return redis_layer_factory
