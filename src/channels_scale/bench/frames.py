"""The bench frame and per-subscriber delivery accounting (pure: no I/O, no clock).

A bench frame is a JSON text frame of exactly :data:`FRAME_SIZE` bytes::

    {"f":2,"p":7,"s":41,"t":1234567890123,"x":"xxxxxxxx..."}

``f`` is the phase (so a late frame from an earlier phase is not mistaken for this one), ``p`` the
publisher id (unique in a run), ``s`` the publisher's sequence number (0, 1, 2, ...), ``t`` the
*scheduled* send time in microseconds of the system-wide monotonic clock (``CLOCK_MONOTONIC``, the
same in every process of the machine), ``x`` padding.

Latency is measured from ``t``, not from the moment the publisher managed to send: a publisher
that falls behind its schedule makes latency grow instead of hiding it (no coordinated omission).

Accounting is per subscriber and per publisher, over the frames of one phase:

- *unique*: frames received at least once;
- *duplicated*: a frame received again after its first copy;
- *reordered*: a frame that arrives after a frame with a higher sequence from the same publisher
  (two swapped frames count one reorder);
- *lost* is not known to a subscriber alone: it is the frames the publishers in its room really
  sent minus the unique ones it received, computed once every process has reported
  (:func:`channels_scale.bench.figures.delivery_figures`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

FRAME_SIZE = 100
"""Bytes in every bench frame (JSON text, padded)."""


class FrameError(ValueError):
    """A received text frame is not a bench frame (wrong shape or size)."""


def encode_frame(phase: int, publisher: int, seq: int, scheduled_us: int) -> bytes:
    """Return the bench frame for ``seq`` of ``publisher``, padded to :data:`FRAME_SIZE` bytes.

    Raises:
        FrameError: the numbers do not fit in :data:`FRAME_SIZE` bytes.
    """
    head = f'{{"f":{phase},"p":{publisher},"s":{seq},"t":{scheduled_us},"x":"'
    pad = FRAME_SIZE - len(head) - 2
    if pad < 0:
        raise FrameError(f"frame fields do not fit in {FRAME_SIZE} bytes: {head!r}")
    return (head + "x" * pad + '"}').encode("ascii")


_FAST = re.compile(rb'\{"f":(\d+),"p":(\d+),"s":(\d+),"t":(\d+),')


def decode_frame(data: bytes | str) -> tuple[int, int, int, int]:
    """Return ``(phase, publisher, seq, scheduled_us)`` of a bench frame.

    Frames exactly as :func:`encode_frame` writes them take a regex fast path (about 4x cheaper
    than ``json.loads``: it runs once per delivery in the load generator); anything else, such as
    a frame re-serialised by a server, goes through ``json.loads``.

    Raises:
        FrameError: ``data`` is not a bench frame.
    """
    if isinstance(data, bytes):
        match = _FAST.match(data)
        if match is not None:
            return int(match[1]), int(match[2]), int(match[3]), int(match[4])
    try:
        obj = json.loads(data)
        return int(obj["f"]), int(obj["p"]), int(obj["s"]), int(obj["t"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FrameError(f"not a bench frame: {data[:40]!r}") from exc


class SubscriberTrack:
    """Delivery accounting of one subscriber over one phase.

    ``msgs_per_publisher`` bounds the sequence numbers a publisher may send in the phase; a
    sequence outside ``[0, msgs_per_publisher)`` is counted as *unexpected* and otherwise ignored.
    Memory: one byte per expected frame per publisher heard.
    """

    __slots__ = ("_high", "_seen", "duplicated", "msgs", "received", "reordered", "unexpected")

    def __init__(self, msgs_per_publisher: int) -> None:
        self.msgs = msgs_per_publisher
        self._seen: dict[int, bytearray] = {}
        self._high: dict[int, int] = {}
        self.received = 0
        self.duplicated = 0
        self.reordered = 0
        self.unexpected = 0

    def record(self, publisher: int, seq: int) -> bool:
        """Account one received frame; True when it is the first copy of an expected frame."""
        self.received += 1
        if not 0 <= seq < self.msgs:
            self.unexpected += 1
            return False
        seen = self._seen.get(publisher)
        if seen is None:
            seen = self._seen[publisher] = bytearray(self.msgs)
        if seen[seq]:
            self.duplicated += 1
            return False
        seen[seq] = 1
        high = self._high.get(publisher, -1)
        if seq < high:
            self.reordered += 1
        else:
            self._high[publisher] = seq
        return True

    def unique_by_publisher(self) -> dict[int, int]:
        """Frames received at least once, per publisher."""
        return {pub: seen.count(1) for pub, seen in self._seen.items()}


@dataclass
class DeliveryCounts:
    """Delivery counters summed over subscribers (of one process, or of all after merging).

    ``unique_by_publisher`` sums, over the subscribers, the frames of each publisher received at
    least once; ``subscribers_by_room`` counts the subscribers that were connected when the phase
    started, per room; ``sent_by_publisher`` and ``room_of_publisher`` come from the publishers.
    """

    received: int = 0
    duplicated: int = 0
    reordered: int = 0
    unexpected: int = 0
    stale: int = 0
    unique_by_publisher: dict[int, int] = field(default_factory=dict)
    subscribers_by_room: dict[str, int] = field(default_factory=dict)
    sent_by_publisher: dict[int, int] = field(default_factory=dict)
    room_of_publisher: dict[int, str] = field(default_factory=dict)

    def add_track(self, track: SubscriberTrack) -> None:
        """Add one subscriber's accounting."""
        self.received += track.received
        self.duplicated += track.duplicated
        self.reordered += track.reordered
        self.unexpected += track.unexpected
        for pub, n in track.unique_by_publisher().items():
            self.unique_by_publisher[pub] = self.unique_by_publisher.get(pub, 0) + n

    def merge(self, other: DeliveryCounts) -> None:
        """Add another process's counters to these."""
        self.received += other.received
        self.duplicated += other.duplicated
        self.reordered += other.reordered
        self.unexpected += other.unexpected
        self.stale += other.stale
        for pub, n in other.unique_by_publisher.items():
            self.unique_by_publisher[pub] = self.unique_by_publisher.get(pub, 0) + n
        for room, n in other.subscribers_by_room.items():
            self.subscribers_by_room[room] = self.subscribers_by_room.get(room, 0) + n
        for pub, n in other.sent_by_publisher.items():
            self.sent_by_publisher[pub] = self.sent_by_publisher.get(pub, 0) + n
        self.room_of_publisher.update(other.room_of_publisher)

    @property
    def unique(self) -> int:
        """Frames received at least once, summed over subscribers."""
        return sum(self.unique_by_publisher.values())

    @property
    def expected(self) -> int:
        """Deliveries owed: for each room, its subscribers times the frames its publishers sent."""
        sent_in_room: dict[str, int] = {}
        for pub, n in self.sent_by_publisher.items():
            room = self.room_of_publisher.get(pub)
            if room is not None:
                sent_in_room[room] = sent_in_room.get(room, 0) + n
        return sum(
            subs * sent_in_room.get(room, 0) for room, subs in self.subscribers_by_room.items()
        )

    @property
    def lost(self) -> int:
        """Deliveries owed but never received (within the phase's drain window)."""
        return max(self.expected - self.unique, 0)

    @property
    def sent(self) -> int:
        """Frames the publishers sent."""
        return sum(self.sent_by_publisher.values())


def merge_counts(parts: Iterable[DeliveryCounts]) -> DeliveryCounts:
    """Sum the counters of several processes."""
    total = DeliveryCounts()
    for part in parts:
        total.merge(part)
    return total
