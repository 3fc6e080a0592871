"""Which :class:`~.broker.Broker` a layer configuration selects.

``"broker": "memory"`` → :class:`~.memory_broker.MemoryBroker` (one process, dev and tests);
a ``redis+cluster://`` host → :class:`~.cluster_broker.ClusterBroker`; anything else (one
Redis, K shards, Sentinel) → :class:`~.redis_broker.RedisBroker`.
"""

from __future__ import annotations

from collections.abc import Callable

from channels_scale.layer.broker import Broker, FrameCallback
from channels_scale.layer.cluster import cluster_seeds
from channels_scale.layer.cluster_broker import ClusterBroker
from channels_scale.layer.config import LayerConfig
from channels_scale.layer.memory_broker import MemoryBroker, MemoryHub
from channels_scale.layer.redis_broker import RedisBroker
from channels_scale.layer.stats import Counters


def make_broker(
    config: LayerConfig,
    counters: Counters,
    on_frame: FrameCallback,
    capacity_of: Callable[[str], int],
    hub: MemoryHub | None = None,
) -> Broker:
    """The broker for ``config``; ``hub`` joins memory brokers of one layer instance."""
    if config.broker == "memory":
        return MemoryBroker(hub or MemoryHub(), config, counters, on_frame, capacity_of)
    if cluster_seeds([host.url for host in config.hosts]) is not None:
        return ClusterBroker(config, counters, on_frame, capacity_of)
    return RedisBroker(config, counters, on_frame, capacity_of)
