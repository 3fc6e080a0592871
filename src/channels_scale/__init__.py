"""channels-scale: Django Channels websockets at scale.

Redis channel layer, N ASGI worker processes, nginx or HAProxy in front, all under supervisor.

``channels_scale.publish``, ``publish_json`` and ``publish_stream`` publish from sync Django code
(:mod:`channels_scale.publisher`); they are imported on first use, so ``import channels_scale``
stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = frozenset({"publish", "publish_json", "publish_stream"})

if TYPE_CHECKING:
    from channels_scale.publisher import publish, publish_json, publish_stream


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from channels_scale import publisher

        return getattr(publisher, name)
    raise AttributeError(f"module 'channels_scale' has no attribute {name!r}")


__all__ = ["__version__", "publish", "publish_json", "publish_stream"]
