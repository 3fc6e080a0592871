"""``channels_scale.layer``: a Django Channels layer on Redis, built for fan-out at scale.

Use ``"BACKEND": "channels_scale.layer.RedisChannelLayer"``; see :class:`RedisChannelLayer` and
``docs/layer.md``.
"""

from __future__ import annotations

from channels_scale.layer.buffer import OverflowPolicy
from channels_scale.layer.channel_layer import RedisChannelLayer


class InMemoryChannelLayer(RedisChannelLayer):
    """The same layer with the in-memory broker: one process, no Redis (development, tests).

    A drop-in for Channels' ``InMemoryChannelLayer`` with this layer's semantics, history
    included: ``"BACKEND": "channels_scale.layer.InMemoryChannelLayer"``.
    """

    def __init__(self, **config: object) -> None:
        config["broker"] = "memory"
        super().__init__(**config)  # type: ignore[arg-type]


__all__ = ["InMemoryChannelLayer", "OverflowPolicy", "RedisChannelLayer"]
