"""Bounded per-channel buffers with an explicit overflow policy (pure: no I/O).

Each process-specific channel of a process has one :class:`ChannelBuffer`. Deliveries that
arrive through pub/sub cannot push back on their sender, so when a buffer is full the
:class:`OverflowPolicy` decides what is lost: the oldest message (default; a slow consumer then
sees the newest state) or the newest. Every drop is counted in the buffer (``dropped``) and can be
announced to the consumer by a notice message returned by the next ``receive()`` (see
``overflow_notice_type``), so it can close a client that cannot keep up instead of growing memory.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from typing import Any

from channels_scale.exceptions import ConfigError

Message = dict[str, Any]
#: ``(expires_at, message)``; one entry object is shared by all local members of a group message
Entry = tuple[float, Message]
#: Takes a message for its channel at once (True) or declines it (False: it is buffered)
Sink = Callable[[Message], bool]


class OverflowPolicy(enum.Enum):
    """What a full buffer does with one more message."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"

    @classmethod
    def parse(cls, value: str | OverflowPolicy) -> OverflowPolicy:
        """Accept an instance or its string value.

        Raises:
            ConfigError: unknown policy name.
        """
        if isinstance(value, OverflowPolicy):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ConfigError(
                f"unknown overflow policy {value!r}: choose one of {choices}"
            ) from None


class ChannelBuffer:
    """Messages waiting for one local channel, oldest first, at most ``capacity`` of them.

    ``waiters`` holds the futures of ``receive()`` calls blocked on this channel; the layer sets
    the first one when a message arrives. The buffer itself never awaits anything.

    ``sink``, when set, is offered a message before it is stored, but only while the buffer holds
    nothing to be taken first (no message, no pending overflow notice): see :meth:`offer_sink`.
    """

    __slots__ = (
        "_items",
        "_unreported",
        "capacity",
        "counters",
        "drop_oldest",
        "dropped",
        "expired",
        "sink",
        "touched",
        "waiters",
    )

    def __init__(
        self,
        capacity: int,
        policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        counters: Any = None,
    ) -> None:
        self.capacity = max(capacity, 1)
        #: the layer's counters (anything with an ``expired`` attribute): every expired message
        #: is counted there too, whether :meth:`take` or :meth:`purge_expired` dropped it
        self.counters = counters
        self.drop_oldest = policy is OverflowPolicy.DROP_OLDEST
        # Made on first offer and dropped when emptied: most channels of an idle process hold
        # nothing, and an empty deque costs ~600 bytes (waiters: a list, ~60).
        self._items: deque[Entry] | None = None
        self._unreported = 0
        #: messages lost to the overflow policy since the buffer was created
        self.dropped = 0
        #: messages dropped because they were past their expiry when taken
        self.expired = 0
        #: set by every offer/take; the layer's housekeeping clears it to find idle buffers
        self.touched = True
        self.waiters: list[asyncio.Future[None]] = []
        self.sink: Sink | None = None

    def __len__(self) -> int:
        items = self._items
        return 0 if items is None else len(items)

    def is_full(self) -> bool:
        """True when one more :meth:`offer` would drop a message."""
        return len(self) >= self.capacity

    def offer(self, entry: Entry) -> bool:
        """Add ``entry``, applying the overflow policy; False when a message was dropped."""
        self.touched = True
        items = self._items
        if items is None:
            items = self._items = deque()
        if len(items) < self.capacity:
            items.append(entry)
            return True
        self.dropped += 1
        self._unreported += 1
        if self.drop_oldest:
            items.popleft()
            items.append(entry)
        return False

    def offer_sink(self, message: Message) -> bool:
        """Give ``message`` to the sink if there is one and nothing is waiting ahead of it."""
        sink = self.sink
        if sink is None or self._items or self._unreported:
            return False
        return sink(message)

    def take(self, now: float, notice_type: str | None = None) -> Message | None:
        """The oldest unexpired message, or None when there is none.

        When ``notice_type`` is set and messages were dropped since the last call, returns first
        ``{"type": notice_type, "dropped": <since last notice>, "total_dropped": <all>}``.
        """
        self.touched = True
        if self._unreported:
            count, self._unreported = self._unreported, 0
            if notice_type is not None:
                return {"type": notice_type, "dropped": count, "total_dropped": self.dropped}
            # no notices: nothing to report, and a sink must not wait behind one (offer_sink)
        items = self._items
        while items:
            expires_at, message = items.popleft()
            if not items:
                self._items = None
            if expires_at >= now:
                return message
            self.expired += 1
            if self.counters is not None:
                self.counters.expired += 1
        return None

    def purge_expired(self, now: float) -> int:
        """Drop expired messages at the head (messages are in expiry order); returns how many."""
        items = self._items
        count = 0
        while items and items[0][0] < now:
            items.popleft()
            count += 1
        if items is not None and not items:
            self._items = None
        self.expired += count
        if count and self.counters is not None:
            self.counters.expired += count
        return count

    def clear(self) -> None:
        """Forget every message (``flush``); waiters keep waiting."""
        self._items = None
        self._unreported = 0
