"""Recovery merge: history read from the stream + live messages, in order, no gap, no duplicate.

Pure logic (no I/O), used by the recovering consumer:

1. The consumer joins the group first, so live messages start arriving; while it recovers, each
   live message goes to :meth:`Recovery.live`, which holds it.
2. It then reads the stream after the client's offset and hands the result to
   :meth:`Recovery.history`. The answer is either the messages to send, in offset order (history
   first, then the held live messages that history did not already cover), or "reload" when the
   history cannot cover the gap (the epoch changed: Redis lost the stream; or the stream was
   trimmed past the client's offset).
3. From then on every live message goes through :meth:`Recovery.live` too, which drops
   duplicates (offset already sent) and reports a gap (an offset skipped: a pub/sub message was
   lost, e.g. during a Redis reconnect) so the consumer can read the stream again to fill it.

Offsets start at 1 in each epoch; offset 0 means "nothing seen yet".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from channels_scale.layer.history import StreamState

__all__ = ["Outcome", "Position", "Recovery", "StreamState"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a group's history: the stream's epoch and the last offset it has."""

    epoch: str
    offset: int


@dataclass(slots=True)
class Outcome(Generic[T]):
    """The answer of :meth:`Recovery.history`: messages to send now, or the reload signal."""

    deliver: list[tuple[int, T]] = field(default_factory=list)
    reload: bool = False
    #: why a reload is needed: ``"epoch"`` (the history was lost) or ``"trimmed"`` (too old)
    reason: str = ""
    #: a held live message lies beyond a hole: read the stream again (still recovering)
    again: bool = False


class Recovery(Generic[T]):
    """Merge one client's history and live messages; see the module docstring.

    Args:
        since: the client's position, or None for a fresh client (no history is sent; live
            messages flow from the current top of the stream).
    """

    __slots__ = ("_held", "_recovering", "epoch", "last")

    def __init__(self, since: Position | None) -> None:
        self.epoch: str | None = since.epoch if since else None
        self.last: int = since.offset if since else 0
        self._recovering = True
        self._held: list[tuple[str, int, T]] = []

    @property
    def recovering(self) -> bool:
        return self._recovering

    def position(self) -> Position | None:
        return None if self.epoch is None else Position(self.epoch, self.last)

    def history(self, state: StreamState, items: list[tuple[int, T]]) -> Outcome[T]:
        """Finish a recovery with the stream's ``state`` and its ``items`` after our offset.

        ``items`` must be the stream's entries with offset > ``self.last`` in ascending order
        (the consumer reads them with ``XRANGE`` after reading ``state``).
        """
        held, self._held = self._held, []
        self._recovering = False
        fresh_client = self.epoch is None
        if not fresh_client and self.epoch != state.epoch:
            self._restart(state)
            return Outcome(reload=True, reason="epoch")
        if not fresh_client and self.last + 1 < state.first and self.last < state.top:
            self._restart(state)
            return Outcome(reload=True, reason="trimmed")
        if fresh_client:
            # A new client starts at the top: it has loaded its state from the source of truth.
            self.epoch, self.last = state.epoch, state.top
            items = []
        out: list[tuple[int, T]] = []
        for offset, item in items:
            if offset == self.last + 1:
                out.append((offset, item))
                self.last = offset
        beyond: list[tuple[str, int, T]] = []
        for epoch, offset, item in sorted(held, key=lambda h: h[1]):
            if epoch != self.epoch:
                beyond.append((epoch, offset, item))
            elif offset == self.last + 1:
                out.append((offset, item))
                self.last = offset
            elif offset > self.last:
                beyond.append((epoch, offset, item))
        if beyond:
            # A live message arrived past a hole the history did not fill yet (written after
            # our read, or a new epoch): keep holding and read again.
            self._recovering = True
            self._held = beyond
            return Outcome(out, again=True)
        return Outcome(out)

    def give_up(self, state: StreamState, reason: str) -> Outcome[T]:
        """End a recovery with the reload signal (e.g. the gap is larger than we replay)."""
        self._held = []
        self._recovering = False
        self._restart(state)
        return Outcome(reload=True, reason=reason)

    def live(self, epoch: str, offset: int, item: T) -> tuple[list[tuple[int, T]], bool]:
        """Take one live message; returns ``(to_send, gap)``.

        While recovering it is held and nothing is sent. After that: the next offset is sent,
        an old one (duplicate) is dropped, and a skipped offset returns ``gap=True`` with nothing
        sent: the consumer must recover from the stream (call :meth:`restart_recovery`, read the
        stream, then :meth:`history`). A new epoch is a gap too.
        """
        if self._recovering:
            self._held.append((epoch, offset, item))
            return [], False
        if epoch != self.epoch:
            return [], True
        if offset <= self.last:
            return [], False
        if offset == self.last + 1:
            self.last = offset
            return [(offset, item)], False
        return [], True

    def restart_recovery(self, item: tuple[str, int, T] | None = None) -> None:
        """Hold live messages again (a gap was seen); ``item`` is the message that showed it."""
        self._recovering = True
        if item is not None:
            self._held.append(item)

    def _restart(self, state: StreamState) -> None:
        self.epoch, self.last = state.epoch, state.top
