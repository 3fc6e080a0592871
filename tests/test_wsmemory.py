"""The light stand-ins for uvicorn's per-connection ``asyncio.Queue`` and ``Event`` (pure)."""

from __future__ import annotations

import asyncio
import inspect
import re

import pytest

from channels_scale.wsmemory import SHARED_MAX, ReceiveQueue, Writable, shared_headers


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


def test_shared_headers_share_names_and_common_values_only() -> None:
    def handshake(key: bytes) -> list[tuple[bytes, bytes]]:
        # Fresh objects each time, as a parser makes them.
        return [
            (b"upgrade", b"websocket"),
            (b"sec-websocket-key", key),
        ]

    first = shared_headers(handshake(b"a" * 24))
    second = shared_headers(handshake(b"b" * 24))
    assert first == [(b"upgrade", b"websocket"), (b"sec-websocket-key", b"a" * 24)]
    assert all(a[0] is b[0] for a, b in zip(first, second, strict=True))
    assert first[0][1] is second[0][1]  # a common value of a shared header
    assert first[1][1] is not second[1][1]  # a per-connection value is left alone


def test_the_shared_table_is_bounded() -> None:
    for i in range(SHARED_MAX + 10):
        shared_headers([(f"x-junk-{i}".encode(), b"v")])

    def fresh() -> bytes:  # a new object each call
        return b"".join([b"x-after-the-", b"table-is-full"])

    one = shared_headers([(fresh(), b"v")])[0][0]
    other = shared_headers([(fresh(), b"v")])[0][0]
    assert one == other == b"x-after-the-table-is-full"
    assert one is not other  # correct, no longer shared: the table did not grow


def test_the_stand_ins_have_every_method_uvicorn_calls_on_what_they_replace() -> None:
    """An upgrade of uvicorn that calls something more on its queue or event fails here."""
    from uvicorn.protocols.websockets import websockets_sansio_impl

    source = inspect.getsource(websockets_sansio_impl)
    for attribute, stand_in in (("queue", ReceiveQueue), ("writable", Writable)):
        called = set(re.findall(rf"self\.{attribute}\.(\w+)\(", source))
        assert called, f"uvicorn no longer uses self.{attribute}: revisit wsprotocol"
        assert called <= set(dir(stand_in)), called - set(dir(stand_in))


async def test_two_waiting_gets_one_cancelled_the_other_still_gets_the_item() -> None:
    queue: ReceiveQueue[str] = ReceiveQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    queue.put_nowait("only")
    assert await asyncio.wait_for(second, 1) == "only"
    assert first.cancelled()


async def test_waits_given_up_do_not_accumulate() -> None:
    queue: ReceiveQueue[int] = ReceiveQueue()
    for _ in range(50):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), 0.001)
    queue.wait()
    # Our own class's bookkeeping: only the live wait is left of the 51.
    assert len(queue._waiters or ()) == 1
