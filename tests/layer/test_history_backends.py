"""Group history, the same suite against both brokers (Redis and in-memory)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.layer.conftest import LayerFactory
from tests.layer.test_contract import recv

HISTORY = {"room.*": {"size": 3, "ttl": 60}}


@pytest.fixture(params=["redis", "ours_memory"])
def factory(request: pytest.FixtureRequest) -> LayerFactory:
    made: LayerFactory = request.getfixturevalue(f"{request.param}_layer_factory")
    return made


async def test_offsets_epoch_and_trimming(factory: LayerFactory) -> None:
    layer = factory(history=HISTORY)
    channel = await layer.new_channel()
    await layer.group_add("room.1", channel)
    state, messages = await layer.group_history("room.1")
    assert (state.first, state.top, messages) == (1, 0, [])  # a first reader gets the epoch
    for n in range(1, 6):
        await layer.group_send("room.1", {"type": "m", "n": n})
    live = [await recv(layer, channel) for _ in range(5)]
    assert [m["_offset"] for m in live] == [1, 2, 3, 4, 5]
    assert {m["_epoch"] for m in live} == {state.epoch}
    state, messages = await layer.group_history("room.1", after=0)
    assert (state.first, state.top) == (3, 5)  # size 3: the oldest two were trimmed
    assert [(offset, m["n"]) for offset, m in messages] == [(3, 3), (4, 4), (5, 5)]
    _, after_four = await layer.group_history("room.1", after=4)
    assert [offset for offset, _ in after_four] == [5]
    await layer.group_send("room.1", {"type": "live only"}, history=False)
    assert "_offset" not in await recv(layer, channel)
    assert (await layer.group_history("room.1"))[0].top == 5


async def test_group_without_history_is_refused(factory: LayerFactory) -> None:
    layer: Any = factory(history=HISTORY)
    with pytest.raises(ValueError, match="keeps no history"):
        await layer.group_history("lobby")
