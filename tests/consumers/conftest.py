"""Fixtures for the consumer suites: both consumer families and Channels' in-memory layer."""

from __future__ import annotations

from typing import Any

import pytest

from channels_scale.net import timeout_factor


def wait(seconds: float = 2.0) -> float:
    """A timeout for one await, scaled by ``CHANNELS_SCALE_TIMEOUT_FACTOR``."""
    return seconds * timeout_factor()


@pytest.fixture(autouse=True)
def in_memory_layer(settings: Any) -> None:
    """Channels' in-memory layer (Channels drops its cached layer when the setting changes)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
