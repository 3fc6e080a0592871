"""What one event loop holds and decides, with no I/O: the layer's sans-I/O core (pure: no I/O).

The :class:`Router` keeps the local channels (their bounded buffers), the local groups (member
channels with the time each joined), the gap detector, and fans messages out to local members.
It is driven by plain method calls — a decoded frame arrived, a channel joined or left a group,
time passed — and never awaits or touches a socket, so it is tested synchronously
(``tests/layer/test_router.py``), the way python-websockets tests its ``Protocol``.

What the broker must do as a consequence (subscribe to a group that got its first local member,
unsubscribe from one that lost its last) is queued in :attr:`Router.changes`, in the order the
calls were made, for the I/O side (:mod:`.loop_layer`) to apply: control operations for one
group are therefore applied in the order they were issued, whatever the timing of Redis.

A buffer's ``waiters`` are the futures of ``receive()`` calls; the router sets the first one when
a message arrives (setting a future is not I/O, and it keeps delivery a plain call).
"""

from __future__ import annotations

from collections.abc import Callable

from channels_scale.layer import codec
from channels_scale.layer.buffer import ChannelBuffer, Entry, OverflowPolicy
from channels_scale.layer.codec import Frame
from channels_scale.layer.history import EPOCH_KEY, OFFSET_KEY
from channels_scale.layer.naming import INBOX_ID_LENGTH
from channels_scale.layer.stats import Counters, GapDetector

#: ``(subscribe?, group)``: a subscription change for the broker
Change = tuple[bool, str]


class Router:
    """Local channels and groups of one event loop (see the module docstring)."""

    def __init__(
        self,
        inbox_id: str,
        capacity_of: Callable[[str], int],
        overflow: OverflowPolicy,
        group_expiry: float,
        counters: Counters,
    ) -> None:
        self.inbox_id = inbox_id
        self.capacity_of = capacity_of
        self.overflow = overflow
        self.group_expiry = group_expiry
        self.counters = counters
        self._drop_oldest = overflow is OverflowPolicy.DROP_OLDEST
        self.buffers: dict[str, ChannelBuffer] = {}
        #: group -> {channel: time added}, in the order added (oldest first, for group_expiry)
        self.groups: dict[str, dict[str, float]] = {}
        self.gaps = GapDetector()
        #: subscription changes for the broker, oldest first; the I/O side drains it
        self.changes: list[Change] = []
        #: ``(origin inbox, group, channel)`` of GROUP_ADD frames applied, for the I/O side to
        #: acknowledge once subscribed; it drains it
        self.joined: list[tuple[str, str, str]] = []
        #: ``(group, channel)`` of GROUP_ADDED acknowledgements received; the I/O side drains it
        self.added: list[tuple[str, str]] = []

    # -- channels -----------------------------------------------------------------------------

    def buffer(self, channel: str) -> ChannelBuffer:
        """The channel's buffer, made on first use."""
        buffer = self.buffers.get(channel)
        if buffer is None:
            buffer = self.buffers[channel] = ChannelBuffer(
                self.capacity_of(channel), self.overflow, self.counters
            )
        return buffer

    @staticmethod
    def wake(buffer: ChannelBuffer) -> None:
        """Wake the first ``receive()`` still waiting on ``buffer``."""
        waiters = buffer.waiters
        while waiters:
            future = waiters.pop(0)  # a list: rarely more than one waiter
            if not future.done():
                future.set_result(None)
                return

    def deliver(self, channel: str, entry: Entry) -> None:
        """Put one message into one local channel's buffer (overflow policy applied, counted)."""
        buffer = self.buffers.get(channel)
        if buffer is None:  # (not `or`: an empty buffer is falsy, and __len__ costs a call)
            buffer = self.buffer(channel)
        if buffer.sink is not None and buffer.offer_sink(entry[1]):
            self.counters.delivered += 1
            self.counters.delivered_direct += 1
            return
        if buffer.offer(entry):
            self.counters.delivered += 1
        else:
            self.counters.dropped_overflow += 1
            if buffer.drop_oldest:
                self.counters.delivered += 1
        if buffer.waiters:
            self.wake(buffer)

    # -- groups -------------------------------------------------------------------------------

    def join(self, group: str, channel: str, now: float) -> bool:
        """Add a local channel to ``group`` (re-adding renews it); True when it is the group's
        first local member (a subscribe is queued in :attr:`changes`)."""
        members = self.groups.get(group)
        first = members is None
        if members is None:
            members = self.groups[group] = {}
            self.changes.append((True, group))
        members.pop(channel, None)  # re-adding renews: keep insertion order == age order
        members[channel] = now
        return first

    def leave(self, group: str, channel: str) -> None:
        """Remove a local channel from ``group``; after the last one the group is dropped."""
        members = self.groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                self._drop_group(group)

    def _drop_group(self, group: str) -> None:
        self.groups.pop(group, None)
        self.gaps.forget(group)
        self.changes.append((False, group))

    def _prune(self, group: str, members: dict[str, float], now: float) -> None:
        limit = now - self.group_expiry
        for channel, added in list(members.items()):
            if added >= limit:
                break
            del members[channel]
        if not members:
            self._drop_group(group)

    def fanout(self, group: str, entry: Entry, now: float) -> None:
        """Put one group message into every local member's buffer (the *same* entry object),
        or give it to the member's sink (:meth:`ChannelBuffer.offer_sink`)."""
        members = self.groups.get(group)
        if not members:
            return
        if now - next(iter(members.values())) > self.group_expiry:
            self._prune(group, members, now)
            if not members:
                return
        buffers = self.buffers
        message = entry[1]
        dropped = direct = 0
        for channel in members:
            buffer = buffers.get(channel)
            if buffer is None:
                buffer = self.buffer(channel)
            # A member with a sink (its connection written to directly) takes the message here,
            # unless something is already buffered for it: then it queues behind, in order.
            if buffer.sink is not None and buffer.offer_sink(message):
                direct += 1
                continue
            if not buffer.offer(entry):
                dropped += 1
            if buffer.waiters:
                self.wake(buffer)
        # drop-oldest stores every new message (an older one made room); drop-newest does not
        counters = self.counters
        counters.delivered += len(members) - (0 if self._drop_oldest else dropped)
        counters.dropped_overflow += dropped
        counters.delivered_direct += direct

    # -- frames from the broker -----------------------------------------------------------------

    def frame_received(self, frame: Frame, now: float) -> None:
        """Apply one decoded frame from the broker (pub/sub), in arrival order."""
        self.counters.received += 1
        kind = frame.kind
        own = frame.origin[:INBOX_ID_LENGTH] == self.inbox_id
        if kind == codec.GROUP:
            if own:
                return  # delivered locally by group_send already
            if not self.check_seq(frame.target, frame):
                return
            if frame.offset:
                payload = frame.payload
                payload[EPOCH_KEY] = frame.epoch
                payload[OFFSET_KEY] = frame.offset
            self.fanout(frame.target, (frame.expires_at, frame.payload), now)
            return
        if kind == codec.FLUSH:
            if not own:
                self.flush()
            return
        if not self.check_seq("", frame):
            return
        if kind == codec.MESSAGE:
            self.deliver(frame.target, (frame.expires_at, frame.payload))
        elif kind == codec.GROUP_ADD:
            self.join(frame.payload, frame.target, now)
            self.joined.append((frame.origin[:INBOX_ID_LENGTH], frame.payload, frame.target))
        elif kind == codec.GROUP_ADDED:
            self.added.append((frame.payload, frame.target))
        elif kind == codec.GROUP_DISCARD:
            self.leave(frame.payload, frame.target)
        else:
            self.counters.bad_frames += 1

    def check_seq(self, key: str, frame: Frame) -> bool:
        """Gap detection: False for a duplicate; counts (or un-counts) lost frames."""
        deliver, lost = self.gaps.observe(key, frame.origin, frame.seq)
        if lost:
            self.counters.lost_gap += lost
        return deliver

    # -- flush, housekeeping, observability ------------------------------------------------------

    def flush(self) -> None:
        """Forget every buffered message and every local group (``flush()``)."""
        for buffer in self.buffers.values():
            buffer.clear()
        for group in list(self.groups):
            self._drop_group(group)
        self.gaps.clear()

    def sweep(self, now: float) -> None:
        """Drop expired messages, idle empty buffers and expired group members."""
        for channel, buffer in list(self.buffers.items()):
            buffer.purge_expired(now)  # counted in self.counters by the buffer
            idle = not buffer.touched and not len(buffer) and not buffer.waiters
            if idle and buffer.sink is None:
                del self.buffers[channel]
            buffer.touched = False
        for group, members in list(self.groups.items()):
            if members and now - next(iter(members.values())) > self.group_expiry:
                self._prune(group, members, now)

    def gauges(self) -> dict[str, int]:
        """Current sizes: local buffers, buffered messages, groups with local members."""
        return {
            "buffers": len(self.buffers),
            "buffered": sum(len(b) for b in self.buffers.values()),
            "groups": len(self.groups),
        }

    def channel_info(self, channel: str) -> dict[str, int]:
        """Buffered and dropped counts of one local channel (zeros when unknown)."""
        buffer = self.buffers.get(channel)
        if buffer is None:
            return {"buffered": 0, "dropped": 0, "expired": 0, "capacity": 0}
        return {
            "buffered": len(buffer),
            "dropped": buffer.dropped,
            "expired": buffer.expired,
            "capacity": buffer.capacity,
        }
