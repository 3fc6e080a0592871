"""Sharded subscriptions of one event loop on a Redis Cluster: one ``SSUBSCRIBE`` reader per
master, and which master holds each wanted shard channel.

The cluster broker (:mod:`.cluster_broker`) owns the slot map; after every reload it calls
:meth:`ShardedSubscriptions.place`, which moves each channel whose slot changed master to that
master's reader (``SUNSUBSCRIBE`` on the old one when it is still there) and closes the readers
left with nothing to read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from channels_scale.layer.cluster import SlotMap, key_slot
from channels_scale.layer.config import LayerConfig
from channels_scale.layer.connection import Shard
from channels_scale.layer.reader import MessageCallback, PubSubReader
from channels_scale.layer.stats import Counters


class ShardedSubscriptions:
    """Wanted shard channels and the per-master readers that hold them."""

    def __init__(
        self,
        node: Callable[[str], Shard],
        on_message: MessageCallback,
        on_redirect: Callable[[], None],
        config: LayerConfig,
        counters: Counters,
    ) -> None:
        self._node = node
        self._on_message = on_message
        self._on_redirect = on_redirect
        self._config = config
        self._counters = counters
        self.readers: dict[str, PubSubReader] = {}
        #: every channel this loop wants -> the master whose reader has it ("" before the map)
        self.wanted: dict[bytes, str] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self.wanted)

    def healthy(self) -> bool:
        """Every wanted channel is placed on a reader that is connected."""
        return all(address and self.readers[address].connected for address in self.wanted.values())

    def _reader_at(self, address: str) -> PubSubReader:
        reader = self.readers.get(address)
        if reader is None:
            reader = self.readers[address] = PubSubReader(
                self._node(address),
                self._on_message,
                self._config,
                self._counters,
                self._on_redirect,
            )
        return reader

    def want(self, channel: bytes, slots: SlotMap) -> asyncio.Future[None] | None:
        """Subscribe on the master of the channel's slot, now; None when subscribed already or
        when the map is not known yet (:meth:`place` subscribes it then)."""
        address = self.wanted.get(channel)
        if address is None:
            owner = slots.master(key_slot(channel)) if slots.loaded else None
            address = self.wanted[channel] = owner or ""
        return self._reader_at(address).want(channel) if address else None

    def placed(self, channel: bytes) -> bool:
        return bool(self.wanted.get(channel))

    async def confirmed(self, channel: bytes) -> None:
        """Wait (bounded, never raising) until the channel's reader has it confirmed."""
        address = self.wanted.get(channel)
        if address:
            await self.readers[address].subscribe(channel)

    def drop(self, channel: bytes) -> None:
        address = self.wanted.pop(channel, None)
        if address:
            self.readers[address].unsubscribe(channel)

    def place(self, slots: SlotMap) -> None:
        """Put every wanted channel on the reader of its slot's master; close idle readers."""
        if not slots.loaded:
            return
        for channel, address in list(self.wanted.items()):
            owner = slots.master(key_slot(channel))
            if owner is None or owner == address:
                continue
            if address:
                self.readers[address].unsubscribe(channel)
            self.wanted[channel] = owner
            self._reader_at(owner).want(channel)
        for address, reader in list(self.readers.items()):
            if not reader.channels:
                del self.readers[address]
                closing = asyncio.get_running_loop().create_task(reader.aclose())
                self._closing.add(closing)  # referenced until done (the loop keeps weak refs)
                closing.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        for reader in self.readers.values():
            await reader.aclose()
        self.readers.clear()
