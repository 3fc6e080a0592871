"""Limits our consumers enforce, and their counters (pure: no I/O).

- :class:`TokenBucket`: the per-connection message rate (local; no lock, one event loop);
- :func:`loads_bounded`: JSON decoding with a depth bound and no lone surrogates;
- :data:`COUNTERS`: how many times each limit answered, per process
  (``channels_scale.consumers.COUNTERS["slow_client"]``...).

The answers (close codes) are in :mod:`channels_scale.closecodes` and docs/close-codes.md.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

__all__ = [
    "COUNTERS",
    "MAX_JSON_DEPTH",
    "ProtocolViolation",
    "TokenBucket",
    "loads_bounded",
]

#: Per-process counts of limit answers. Keys: ``slow_client``, ``rate_connection``,
#: ``rate_user``, ``connections_per_user``, ``idle_timeout``, ``protocol_violation``,
#: ``internal_error``, ``forbidden``, ``unauthorized``, ``not_found``.
COUNTERS: Counter[str] = Counter()

#: Default deepest nesting of arrays/objects a JSON frame may have (``json`` recurses per level:
#: 10,000 levels raise RecursionError inside the decoder).
MAX_JSON_DEPTH = 32


class ProtocolViolation(ValueError):
    """A client frame the endpoint refuses; the consumer closes with 1008 and this reason.

    Raise it from any handler: the consumer closes, leaves its groups and calls ``disconnect``.
    The reason goes into the close frame, so keep it short (at most 123 bytes) and free of
    anything private.
    """


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; :meth:`take` spends one.

    Time comes from ``clock`` (``time.monotonic``): the bucket holds two floats and a clock.
    """

    __slots__ = ("burst", "clock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, clock: Any = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.stamp: float = clock()

    def take(self) -> bool:
        """Spend one token; False (nothing spent) when the bucket is empty."""
        now = self.clock()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


# A JSON string (with its escapes) or one bracket: strings are skipped so that brackets inside
# them do not count.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_depth_over(text: str, limit: int) -> bool:
    """Whether ``text`` (JSON) nests arrays/objects deeper than ``limit``.

    Fast path: fewer opening brackets than ``limit`` cannot nest deeper (two ``str.count``).
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _TOKEN.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def loads_bounded(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses what the rest of a server cannot take.

    Raises:
        ProtocolViolation: not JSON, nested deeper than ``max_depth``, or holding a lone
            surrogate (``"\\ud800"``: valid JSON, but no UTF-8 encoding exists, so a database
            or another client would fail on it later).
    """
    if json_depth_over(text, max_depth):
        raise ProtocolViolation("JSON nested too deep")
    try:
        content = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolViolation("invalid JSON") from None
    # A frame a server decoded from UTF-8 can hold a surrogate only as a \u escape; other
    # callers may pass any str, so non-ASCII text is checked too.
    suspect = not text.isascii() or _SURROGATE_ESCAPE.search(text) is not None
    if suspect and _has_lone_surrogate(content):
        raise ProtocolViolation("lone surrogate in JSON string")
    return content
