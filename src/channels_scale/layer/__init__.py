"""``channels_scale.layer``: a Django Channels layer on Redis, built for fan-out at scale.

Use ``"BACKEND": "channels_scale.layer.RedisChannelLayer"``; see :class:`RedisChannelLayer` and
``docs/layer.md``.
"""

from __future__ import annotations

from channels_scale.layer.buffer import OverflowPolicy
from channels_scale.layer.channel_layer import RedisChannelLayer

__all__ = ["OverflowPolicy", "RedisChannelLayer"]
