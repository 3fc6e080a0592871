"""Where messages, history and presence live: the :class:`Broker` and :class:`PresenceStore`
interfaces (pure: no I/O).

The per-loop layer (:mod:`.loop_layer`) owns one broker: it hands it encoded frames (see
:mod:`.codec`) and gets frames back through the ``on_frame`` callback given at construction;
what happens to them locally is the router's business (:mod:`.router`). One implementation
exists today, :class:`~.redis_broker.RedisBroker` (one Redis, or K shards by jump hash); Cluster
and Sentinel brokers are meant to implement the same interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from channels_scale.layer.history import HistoryRule, StreamState

#: called with each frame the broker receives for this loop (its inbox, its groups, flushes);
#: called synchronously from the broker's reader, must not block
FrameCallback = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Published:
    """Where a group message kept in history landed: ``(epoch, offset)``; zero/empty without."""

    offset: int = 0
    epoch: str = ""


class Broker(Protocol):
    """Delivery between the event loops (processes) of one layer prefix.

    Guarantees every implementation gives:

    - **Delivery.** Group messages and inbox messages are delivered *at most once* to each
      subscribed loop: a loop that is disconnected when a frame passes loses it (the router
      counts it by sequence numbers). Queue messages (:meth:`queue_push`) are kept until one
      :meth:`queue_pop` of any loop takes them, or they expire.
    - **Ordering.** Frames passed by one loop to the broker, each awaited before the next, reach
      each receiving loop in that order. Subscription changes of one loop are applied in the
      order the calls were made (:meth:`subscribe_group` and :meth:`unsubscribe_group` act when
      called; nothing is deferred to a task).
    - **Outage.** Sending calls retry for ``send_timeout`` seconds, counted from the first try,
      then raise :class:`~channels_scale.exceptions.LayerUnavailable`; a retried send is not
      delivered twice (receivers drop a repeated sequence number) nor stored twice (history is
      written under an idempotency key). Receiving never raises: subscriptions are restored
      after a reconnect (backoff with full jitter), :meth:`queue_pop` waits.
    - **History.** :meth:`publish` with a rule stores the frame and publishes it atomically,
      under the group's *epoch* and the next *offset* (1, 2, 3... without holes). A new epoch
      starts whenever the stored history was lost; offsets of different epochs are unrelated.
    """

    async def subscribe_inbox(self, inbox_id: str) -> None:
        """Receive the frames sent to this loop's inbox and the prefix' flush notices."""
        ...

    def subscribe_group(self, group: str) -> asyncio.Future[None] | None:
        """Start receiving ``group``'s frames now; a future set once confirmed, None if already."""
        ...

    async def wait_subscribed(self, group: str) -> None:
        """Wait (bounded by ``send_timeout``, never raising for an outage) until confirmed."""
        ...

    def unsubscribe_group(self, group: str) -> None:
        """Stop receiving ``group``'s frames (applied after every earlier change)."""
        ...

    async def send_inbox(self, inbox_id: str, frame: bytes) -> bool:
        """Send a frame to another loop's inbox; False (and counted ``undeliverable``) when
        nobody listens."""
        ...

    async def publish(
        self, group: str, frame: bytes, rule: HistoryRule | None, send_id: str
    ) -> Published:
        """Publish to every loop subscribed to ``group`` and push to its queue members; with a
        ``rule``, also keep it in history (``send_id`` makes a retry idempotent)."""
        ...

    async def queue_push(self, channel: str, frame: bytes, capacity: int) -> bool:
        """Append to a normal channel's queue; False (nothing stored) when it is full."""
        ...

    async def queue_pop(self, channel: str) -> bytes | None:
        """Take the queue's oldest frame, waiting a short while (None: nothing came)."""
        ...

    async def queue_group_add(self, group: str, channel: str) -> None:
        """Record a normal channel as a member of ``group`` (renewed for ``group_expiry``)."""
        ...

    async def queue_group_discard(self, group: str, channel: str) -> None:
        """Forget a normal channel's membership of ``group``."""
        ...

    async def history(
        self, group: str, rule: HistoryRule, after: int, limit: int
    ) -> tuple[StreamState, list[bytes]]:
        """The group's stream state and up to ``limit`` stored frames with offset > ``after``."""
        ...

    async def flush(self, notice: bytes) -> None:
        """Delete everything stored under the prefix and broadcast ``notice`` to every loop."""
        ...

    def subscriptions(self) -> int:
        """How many channels this loop is subscribed to (gauge)."""
        ...

    async def aclose(self) -> None:
        """Close every connection; the broker is unusable afterwards."""
        ...


class PresenceStore(Protocol):
    """Who is connected to a group, with expiry of a dead process' entries.

    Each entry is one connection (``conn``) of one user (``user["id"]``), valid until its
    process stops renewing it: entries not renewed for ``ttl`` seconds are removed by the next
    :meth:`sweep` (or any call that reads the group), so a worker killed without cleanup drops
    out of every list within ``ttl``. Join/leave results say whether the *user* appeared or
    disappeared (their first connection joined, their last one left), which is when presence
    events are sent. An outage raises
    :class:`~channels_scale.exceptions.LayerUnavailable` after ``send_timeout``.
    :class:`channels_scale.presence.Presence` is the Redis implementation.
    """

    async def join(self, group: str, conn: str, user: dict[str, Any]) -> bool:
        """Add one connection; True when the user was not present before."""
        ...

    async def refresh(self, group: str, entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Heartbeat: renew ``entries`` (conn -> user); returns the users that (re)appeared."""
        ...

    async def leave(self, group: str, *conns: str) -> list[dict[str, Any]]:
        """Remove connections; returns the users that left with their last connection."""
        ...

    async def sweep(self, group: str) -> list[dict[str, Any]]:
        """Remove expired entries; returns the users that left with them."""
        ...

    async def members(self, group: str) -> list[dict[str, Any]]:
        """The users present, one entry per user."""
        ...
