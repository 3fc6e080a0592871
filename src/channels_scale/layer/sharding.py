"""Shard choice by jump consistent hash (pure: no I/O).

Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014): adding a shard
moves only ``1/K`` of the keys, and no ring table is needed. Groups are placed by group name,
inboxes by inbox id, queues by channel name, so every key and pub/sub channel of one name lives
on one shard.
"""

from __future__ import annotations

import hashlib

_MASK64 = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """The bucket in ``[0, buckets)`` for a 64-bit ``key``.

    Raises:
        ValueError: ``buckets`` is not positive.
    """
    if buckets < 1:
        raise ValueError("buckets must be >= 1")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK64
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def name_key(name: str) -> int:
    """A stable 64-bit key for a name (same in every process, unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


class ShardRouter:
    """Maps names to one of ``count`` shards; with one shard it does no hashing at all."""

    __slots__ = ("_cache", "count")

    #: names routed are cached up to this many entries (group names repeat a lot)
    CACHE_SIZE = 65_536

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("a layer needs at least one Redis host")
        self.count = count
        self._cache: dict[str, int] = {}

    def shard_for(self, name: str) -> int:
        """The shard index for a group name, an inbox id or a queue channel name."""
        if self.count == 1:
            return 0
        shard = self._cache.get(name)
        if shard is None:
            shard = jump_hash(name_key(name), self.count)
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[name] = shard
        return shard
