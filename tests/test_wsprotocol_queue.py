"""The light stand-ins for uvicorn's per-connection ``asyncio.Queue`` and ``Event`` (pure)."""

from __future__ import annotations

import asyncio

import pytest

from channels_scale.wsprotocol import ReceiveQueue, Writable


async def test_receive_queue_is_fifo_and_empty_holds_nothing() -> None:
    queue: ReceiveQueue[int] = ReceiveQueue()
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    for item in (1, 2, 3):
        queue.put_nowait(item)
    assert queue.qsize() == 3
    assert [await queue.get(), queue.get_nowait(), await queue.get()] == [1, 2, 3]
    assert queue.empty()


async def test_a_waiting_get_wakes_on_put() -> None:
    queue: ReceiveQueue[str] = ReceiveQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait("connect")
    assert await asyncio.wait_for(getter, 1) == "connect"


async def test_a_cancelled_get_loses_nothing() -> None:
    queue: ReceiveQueue[str] = ReceiveQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    queue.put_nowait("after")
    assert await asyncio.wait_for(queue.get(), 1) == "after"


async def test_wait_is_done_at_once_when_an_item_is_there() -> None:
    queue: ReceiveQueue[int] = ReceiveQueue()
    queue.put_nowait(7)
    assert queue.wait().done()


async def test_writable_waiters_wake_on_set_and_a_cancelled_one_does_not_block_others() -> None:
    writable = Writable()
    assert writable.is_set() and await writable.wait()
    writable.clear()
    first = asyncio.create_task(writable.wait())
    second = asyncio.create_task(writable.wait())
    await asyncio.sleep(0)
    assert not first.done() and not second.done()
    first.cancel()
    await asyncio.sleep(0)
    writable.set()
    assert await asyncio.wait_for(second, 1) is True
    assert first.cancelled()
