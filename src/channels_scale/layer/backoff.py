"""Reconnect and retry delays: exponential backoff with full jitter (pure: no I/O).

"Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): the delay is uniform in
``[0, min(cap, base * 2**attempt)]``, which spreads the reconnects of many processes after a Redis
restart instead of having them all knock at the same instant.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def full_jitter(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry number ``attempt`` (0-based), in seconds."""
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return float(ceiling * rand())
