"""Channel-layer settings chosen by the environment the stack gives each worker.

``channels-scale up`` exports, to every worker:

- ``CHANNELS_SCALE_REDIS_URL``: the Redis the layer uses (private unless ``--redis`` is given);
- ``CHANNELS_SCALE_LAYER``: ``channels_scale`` (ours), ``channels_redis`` (the recipe's core layer)
  or ``channels_redis_pubsub`` (channels_redis' pub/sub layer);
- ``CHANNELS_SCALE_WORKER_ID``: the worker's number, 0..N-1.

A Django project calls :func:`channel_layers_from_env` in its settings to follow them.
"""

from __future__ import annotations

import os
from typing import Any

LAYER_ENV = "CHANNELS_SCALE_LAYER"
REDIS_URL_ENV = "CHANNELS_SCALE_REDIS_URL"
WORKER_ID_ENV = "CHANNELS_SCALE_WORKER_ID"

LAYERS = ("channels_scale", "channels_redis", "channels_redis_pubsub")
# Ours (channels_scale.layer.RedisChannelLayer, docs/layer.md); `--layer channels_redis` keeps the
# recipe's layer for comparison.
DEFAULT_LAYER = "channels_scale"

# redis-py 8 gives every connection a 5 s socket_timeout, so an idle channels_redis `receive()`
# (a blocking pop longer than that) raises TimeoutError and kills the consumer (channels_redis
# issue #422). Its pool is also capped, so ~200 clients connecting at once raise
# MaxConnectionsError. These are the workarounds the recipe needs today.
RECIPE_POOL_OPTIONS: dict[str, Any] = {"socket_timeout": None, "max_connections": 10_000}


def channel_layers_from_env(
    default_url: str = "redis://127.0.0.1:6379/0",
    default_layer: str = DEFAULT_LAYER,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a ``CHANNEL_LAYERS`` dict for the layer and Redis named in the environment.

    ``options`` go into our layer's ``CONFIG`` (e.g. ``history``); the recipe's layers ignore them.

    Raises:
        ValueError: ``CHANNELS_SCALE_LAYER`` names no known layer.
    """
    url = os.environ.get(REDIS_URL_ENV, default_url)
    layer = os.environ.get(LAYER_ENV, default_layer)
    return {"default": channel_layer_config(layer, url, options)}


def channel_layer_config(
    layer: str, url: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS["default"]`` entry for ``layer`` on the Redis at ``url``."""
    if layer == "channels_scale":
        return {
            "BACKEND": "channels_scale.layer.RedisChannelLayer",
            "CONFIG": {"hosts": [url], **(options or {})},
        }
    if layer == "channels_redis":
        return {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, **RECIPE_POOL_OPTIONS}]},
        }
    if layer == "channels_redis_pubsub":
        return {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": url, **RECIPE_POOL_OPTIONS}]},
        }
    raise ValueError(f"unknown channel layer {layer!r}: choose one of {', '.join(LAYERS)}")
