from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from channels_scale.presence import stop_trackers


@pytest.fixture(autouse=True)
async def _stop_presence_trackers() -> AsyncIterator[None]:
    """Presence heartbeats run per event loop: stop them before the test's loop closes."""
    yield
    await stop_trackers()
