"""Counters of the layer and loss detection by sequence numbers (pure: no I/O)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Counters:
    """What one event loop's layer did; :meth:`RedisChannelLayer.stats` sums them.

    Loss counters (messages known lost): ``dropped_overflow``, ``expired``, ``lost_gap``,
    ``undeliverable``, ``send_failed``.
    """

    #: messages put into local buffers (one per member per group message; with drop-oldest a
    #: message stored by evicting an older one counts here and the evicted one in dropped_overflow)
    delivered: int = 0
    #: of those, messages a sink took at once (written to the connection without a buffer)
    delivered_direct: int = 0
    #: frames published or pushed to Redis (one per send/group_send to Redis)
    published: int = 0
    #: frames received from Redis and decoded (one per group message per process)
    received: int = 0
    #: messages dropped by a full local buffer (overflow policy)
    dropped_overflow: int = 0
    #: messages dropped because they expired before a receive() took them
    expired: int = 0
    #: messages a receiver never got, detected by a gap in the sender's sequence numbers
    #: (for example published while this process was resubscribing after a Redis outage)
    lost_gap: int = 0
    #: sends to a process-specific channel whose process had no inbox subscribed (gone)
    undeliverable: int = 0
    #: sends that raised LayerUnavailable after retrying for send_timeout
    send_failed: int = 0
    #: attempts retried because Redis was unreachable
    send_retries: int = 0
    #: successful (re)connections of pub/sub readers after the first
    reconnects: int = 0
    #: frames from Redis that could not be decoded (not from this layer)
    bad_frames: int = 0
    #: error replies from Redis to background work (e.g. a blocking pop refused with
    #: NOREPLICAS, READONLY or MISCONF); the work is retried with backoff
    error_replies: int = 0
    #: errors of a pub/sub reader other than an outage: a SUBSCRIBE refused (an ACL without the
    #: channel: ``-NOPERM``) or an unexpected error while connecting; retried with backoff
    pubsub_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


class _SenderState:
    __slots__ = ("first", "last", "missing", "unknown")

    def __init__(self, seq: int) -> None:
        self.first = self.last = seq
        self.missing: set[int] = set()  # above first, skipped: counted as lost
        self.unknown: set[int] = set()  # below the first seen, not yet seen: not counted


class GapDetector:
    """Counts messages lost between one sender and this receiver, per pub/sub channel.

    Every sender (an inbox id) numbers its frames per destination, 1, 2, 3... A receiver that
    sees ``seq`` jump from 4 to 7 knows 5 and 6 were lost, for example because they were
    published while it was reconnecting. Frames published concurrently over several connections
    can overtake each other, so a late frame whose number was counted missing is un-counted, and
    frames older than the first one seen are accepted. Memory is bounded: at most
    ``max_origins`` senders per channel, ``max_missing`` remembered numbers per sender.
    """

    __slots__ = ("_channels", "max_missing", "max_origins")

    def __init__(self, max_origins: int = 1024, max_missing: int = 256) -> None:
        self.max_origins = max_origins
        self.max_missing = max_missing
        self._channels: dict[str, dict[str, _SenderState]] = {}

    def observe(self, channel: str, origin: str, seq: int) -> tuple[bool, int]:
        """Record a frame; returns (deliver it?, change to the lost count).

        ``deliver`` is False for a duplicate (a frame already seen, e.g. published twice by a
        retry whose first reply was lost), which keeps pub/sub delivery at most once. That
        holds for a sender's first frame too: a sender never numbers from 1 again under the same
        origin (it takes a new origin instead), so a second ``1`` is a duplicate, not a restart.
        A frame too old to tell (below the remembered window) is not delivered either.
        """
        origins = self._channels.get(channel)
        if origins is None:
            origins = self._channels[channel] = {}
        state = origins.get(origin)
        if state is None:
            if len(origins) >= self.max_origins:
                del origins[next(iter(origins))]
            origins[origin] = _SenderState(seq)
            return True, 0
        last = state.last
        if seq == last + 1:
            state.last = seq
            return True, 0
        if seq > last:
            gap = seq - last - 1
            if len(state.missing) + gap <= self.max_missing:
                state.missing.update(range(last + 1, seq))
            state.last = seq
            return True, gap
        if seq in state.missing:
            state.missing.discard(seq)
            return True, -1
        if seq in state.unknown:
            state.unknown.discard(seq)
            return True, 0
        if seq < state.first:
            # sent before the first frame we saw, overtaken by it: new to us
            if len(state.unknown) + state.first - seq <= self.max_missing:
                state.unknown.update(range(seq + 1, state.first))
            state.first = seq
            return True, 0
        return False, 0

    def forget(self, channel: str) -> None:
        """Stop tracking a channel (after unsubscribing: a later jump is not a loss)."""
        self._channels.pop(channel, None)

    def clear(self) -> None:
        """Forget everything."""
        self._channels.clear()
