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
import re
from typing import Any

LAYER_ENV = "CHANNELS_SCALE_LAYER"
REDIS_URL_ENV = "CHANNELS_SCALE_REDIS_URL"
WORKER_ID_ENV = "CHANNELS_SCALE_WORKER_ID"

LAYERS = ("channels_scale", "channels_redis", "channels_redis_pubsub")
# Ours (channels_scale.layer.RedisChannelLayer, docs/layer.md); `--layer channels_redis` keeps the
# recipe's layer for comparison.
DEFAULT_LAYER = "channels_scale"
OUR_BACKEND = "channels_scale.layer.RedisChannelLayer"

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
    """The ``CHANNEL_LAYERS["default"]`` entry for ``layer`` on the Redis at ``url``.

    ``url`` is what ``up --redis`` takes: one URL, or several ``redis://`` URLs separated by
    commas (shards), or one ``redis+cluster://``/``redis+sentinel://`` URL (whose own commas
    separate its hosts): see :func:`channels_scale.layer.config.split_hosts`.
    """
    from channels_scale.layer.config import split_hosts

    hosts = split_hosts(url)
    if layer == "channels_scale":
        return {
            "BACKEND": OUR_BACKEND,
            "CONFIG": {"hosts": hosts, **(options or {})},
        }
    if layer == "channels_redis":
        return {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": h, **RECIPE_POOL_OPTIONS} for h in hosts]},
        }
    if layer == "channels_redis_pubsub":
        return {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": h, **RECIPE_POOL_OPTIONS} for h in hosts]},
        }
    raise ValueError(f"unknown channel layer {layer!r}: choose one of {', '.join(LAYERS)}")


def stack_channel_layers(project: dict[str, Any] | None) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` of a stack worker: the project's, with ``default`` on the stack's Redis.

    ``channels-scale up`` generates a settings module that imports the project's settings and
    calls this (see :mod:`channels_scale.stack.overlay`). ``default`` becomes the layer named by
    ``CHANNELS_SCALE_LAYER`` on ``CHANNELS_SCALE_REDIS_URL``; when the project already used our
    layer, its other options (``history``, ``prefix``, ``capacity``...) are kept, so a project's
    history configuration survives. Other aliases are left as the project wrote them.

    Raises:
        KeyError: the stack's environment variables are not set (not running under the stack).
    """
    layer = os.environ[LAYER_ENV]
    url = os.environ[REDIS_URL_ENV]
    layers = dict(project or {})
    previous = layers.get("default") or {}
    options: dict[str, Any] = {}
    if layer == "channels_scale" and previous.get("BACKEND") == OUR_BACKEND:
        options = {k: v for k, v in (previous.get("CONFIG") or {}).items() if k != "hosts"}
    layers["default"] = channel_layer_config(layer, url, options)
    return layers


_USER_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*:)[^@/]+@")
_QUERY_PASSWORD = re.compile(r"([?&][a-z_]*password=)[^&]*")


def redact(url: str) -> str:
    """A Redis URL (or ``up --redis``'s comma-separated URLs) with every password replaced by
    ``***``: the user's (``redis://user:PASSWORD@``, also ``+cluster``/``+sentinel``) and the
    sentinels' (``?sentinel_password=``)."""
    from channels_scale.layer.config import split_hosts

    return ",".join(
        _QUERY_PASSWORD.sub(r"\1***", _USER_PASSWORD.sub(r"\1***@", part))
        for part in split_hosts(url)
    )


def on_hosts(url: str, described: str) -> bool:
    """Whether :func:`describe_hosts`' answer ``described`` names every host of ``url`` (the
    stack's ``--redis`` value)."""
    from channels_scale.layer.config import split_hosts

    shown = described.split(", ")
    return all(redact(part) in shown for part in split_hosts(url))


def describe_hosts(config: dict[str, Any]) -> str:
    """The Redis addresses of a ``CHANNEL_LAYERS`` entry, as a user would write them."""
    hosts = (config.get("CONFIG") or {}).get("hosts")
    if not hosts:
        return "its default host"
    shown = []
    for host in hosts:
        if isinstance(host, dict):
            host = host.get("address") or f"{host.get('host')}:{host.get('port')}"
        elif isinstance(host, (list, tuple)):
            host = ":".join(str(part) for part in host)
        shown.append(redact(str(host)))
    return ", ".join(shown)
