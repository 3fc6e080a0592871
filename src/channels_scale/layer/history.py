"""Group history: a capped Redis Stream per group, written atomically with the publish.

Groups whose name matches a ``history`` pattern of the layer config keep their messages::

    "CONFIG": {"hosts": [...], "history": {"chat.*": {"size": 1000, "ttl": 86400}}}

For such a group one server-side script (:data:`GROUP_SEND_HISTORY`) does, atomically:
create the group's *epoch* if missing, take the next *offset* (``INCR``), append the frame to the
stream (``XADD`` with id ``<offset>-1``, capped at ``size`` entries), refresh the TTL of the three
keys, and ``PUBLISH`` the frame with its epoch and offset appended. So every live copy and every
stored copy of a message carry the same ``(epoch, offset)``, and offsets have no holes.

The epoch is a random token, made anew whenever Redis lost the group's keys (a restart without
persistence, a TTL that ran out, a failover to a replica that missed writes): a client holding an
old epoch can tell its offsets mean nothing any more and must reload (see
:mod:`channels_scale.history.merge`).

Frames stay a msgpack array: the script appends two items (offset, epoch) to the six-item frame
of :mod:`.codec` by rewriting its one-byte array header (``0x96`` → ``0x98``). Receivers see them
in the message dict as ``_epoch`` and ``_offset`` (:data:`EPOCH_KEY`, :data:`OFFSET_KEY`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels_scale.exceptions import ConfigError

EPOCH_KEY = "_epoch"
OFFSET_KEY = "_offset"

#: msgpack fixarray headers: the codec's 6-item frame, and the same frame with offset + epoch
FRAME_HEADER = 0x96
HISTORY_FRAME_HEADER = 0x98
#: the array headers a group frame starts with, without and with history
GROUP_HEADERS = (FRAME_HEADER, HISTORY_FRAME_HEADER)

# The epoch, the offset counter and the stream live and die together: when the epoch or the
# counter is missing (never written, expired, lost), a new epoch starts at offset 0.
# (epoch key, counter key, stream key, fresh epoch token, ttl ms) -> epoch
_ENSURE_EPOCH = """
local function ensure_epoch(k_epoch, k_offset, k_stream, fresh, ttl)
  local epoch = redis.call('GET', k_epoch)
  if epoch and redis.call('EXISTS', k_offset) == 1 then
    return epoch
  end
  redis.call('SET', k_epoch, fresh, 'PX', ttl)
  redis.call('SET', k_offset, 0, 'PX', ttl)
  redis.call('DEL', k_stream)
  return fresh
end
"""

# KEYS: 1 group channel, 2 its queue members, 3 epoch, 4 offset counter, 5 stream,
#       6 the send's idempotency key.
# ARGV: 1 frame with the 8-item header, 2 oldest valid join time, 3 a fresh epoch token,
#       4 stream size, 5 ttl in ms, 6 idempotency key ttl in ms.
# Returns {offset, epoch, queue members...}.
# A send retried because its reply was lost (the first try ran) finds its idempotency key and
# gets the first try's offset back: stored once, published once (Centrifugo's Redis engine does
# the same check in its publish script).
GROUP_SEND_HISTORY = (
    _ENSURE_EPOCH
    + """
local offset, epoch
local seen = redis.call('GET', KEYS[6])
if seen then
  local sep = string.find(seen, ':', 1, true)
  offset = tonumber(string.sub(seen, 1, sep - 1))
  epoch = string.sub(seen, sep + 1)
else
  epoch = ensure_epoch(KEYS[3], KEYS[4], KEYS[5], ARGV[3], ARGV[5])
  offset = redis.call('INCR', KEYS[4])
  local data = ARGV[1] .. cmsgpack.pack(offset) .. cmsgpack.pack(epoch)
  redis.call('XADD', KEYS[5], 'MAXLEN', '=', ARGV[4], offset .. '-1', 'f', data)
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
  redis.call('PEXPIRE', KEYS[5], ARGV[5])
  redis.call('PUBLISH', KEYS[1], data)
  redis.call('SET', KEYS[6], offset .. ':' .. epoch, 'PX', ARGV[6])
end
local result = {offset, epoch}
if redis.call('EXISTS', KEYS[2]) == 1 then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[2], '+inf')) do
    table.insert(result, member)
  end
end
return result
"""
)

# KEYS: 1 epoch, 2 offset counter, 3 stream. ARGV: 1 a fresh epoch token, 2 read after this
# offset, 3 at most this many entries, 4 ttl in ms.
# Returns {epoch, top offset, first offset kept (top+1 when empty), entries...} where each entry
# is the stored frame. Creates the epoch when missing so a first reader and a first writer agree.
READ_HISTORY = (
    _ENSURE_EPOCH
    + """
local epoch = ensure_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[4])
local top = tonumber(redis.call('GET', KEYS[2]) or '0')
local first = top + 1
local head = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
if #head > 0 then
  first = tonumber(string.match(head[1][1], '^(%d+)'))
end
local result = {epoch, top, first}
local after = tonumber(ARGV[2])
if after < top then
  local start = math.max(after + 1, first)
  for _, entry in ipairs(redis.call('XRANGE', KEYS[3], start .. '-1', '+', 'COUNT', ARGV[3])) do
    table.insert(result, entry[2][2])
  end
end
return result
"""
)


@dataclass(frozen=True, slots=True)
class StreamState:
    """What a group's stream holds now: its epoch, the first offset still kept and the last one
    written. ``first`` is ``top + 1`` when the stream is empty. (Defined here, in the layer, so
    the layer never imports from :mod:`channels_scale.history`; that package re-exports it.)"""

    epoch: str
    first: int
    top: int


@dataclass(frozen=True, slots=True)
class HistoryRule:
    """How much history a group keeps: ``size`` entries at most, for ``ttl`` seconds of quiet."""

    pattern: str
    size: int
    ttl: float


class HistoryPolicy:
    """Which groups keep history, by ``fnmatch`` pattern on the group name (first match wins)."""

    __slots__ = ("_cache", "_compiled", "rules")

    def __init__(self, rules: tuple[HistoryRule, ...] = ()) -> None:
        self.rules = rules
        self._compiled = [(re.compile(fnmatch.translate(r.pattern)), r) for r in rules]
        self._cache: dict[str, HistoryRule | None] = {}

    @classmethod
    def parse(cls, option: Any) -> HistoryPolicy:
        """Check the ``history`` option: ``{pattern: {"size": int, "ttl": seconds}}``.

        Raises:
            ConfigError: not a mapping, or a size/ttl that is not a positive number.
        """
        if option is None:
            return cls()
        if isinstance(option, HistoryPolicy):
            return option
        if not isinstance(option, Mapping):
            raise ConfigError('history must be a dict: {"pattern": {"size": N, "ttl": seconds}}')
        rules = []
        for pattern, spec in option.items():
            if not isinstance(pattern, str) or not isinstance(spec, Mapping):
                raise ConfigError(f"history[{pattern!r}] must be a dict with size and ttl")
            size, ttl = spec.get("size", 1000), spec.get("ttl", 86400)
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ConfigError(f"history[{pattern!r}]['size'] must be a positive integer")
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
                raise ConfigError(f"history[{pattern!r}]['ttl'] must be a positive number")
            rules.append(HistoryRule(pattern, size, float(ttl)))
        return cls(tuple(rules))

    def rule_for(self, group: str) -> HistoryRule | None:
        """The rule of ``group``, or None when it keeps no history."""
        try:
            return self._cache[group]
        except KeyError:
            pass
        found = next((rule for regex, rule in self._compiled if regex.match(group)), None)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[group] = found
        return found

    def __bool__(self) -> bool:
        return bool(self.rules)


def with_history_header(frame: bytes) -> bytes:
    """The codec's frame with its array header widened for the two items the script appends."""
    if frame[0] != FRAME_HEADER:
        raise ValueError("not a six-item frame")
    return bytes((HISTORY_FRAME_HEADER,)) + frame[1:]
