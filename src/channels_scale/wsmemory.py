"""What our uvicorn protocol keeps per connection, made small (pure: no I/O but futures).

An idle connection is what a worker holds most of, so each object kept per connection counts
(docs/per-delivery.md, "Idle memory"). Used by
:class:`channels_scale.wsprotocol.BoundedWebSocketProtocol`:

- :class:`ReceiveQueue` and :class:`Writable`: what uvicorn's protocol calls on its
  ``asyncio.Queue`` and ``asyncio.Event``, allocating nothing while the connection is idle;
- :func:`shared_headers`: the scope's header names (and the values of headers most handshakes
  share) as one ``bytes`` object each for all connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Headers whose values most connections share (the load balancer's, the handshake's own): their
#: values are shared too. Other values (keys, cookies, addresses) are per connection anyway.
SHARED_VALUE_NAMES = frozenset(
    {
        b"host", b"upgrade", b"connection", b"sec-websocket-version",
        b"sec-websocket-extensions", b"x-forwarded-proto", b"origin", b"user-agent",
        b"accept-encoding", b"accept-language", b"cache-control", b"pragma",
    }
)  # fmt: skip

#: Bound of the table of shared names and values: a client choosing new names or values for
#: every handshake fills it once, then its handshakes just stop being shared.
SHARED_MAX = 1024

_shared: dict[bytes, bytes] = {}


def _share(value: bytes) -> bytes:
    found = _shared.get(value)
    if found is not None:
        return found
    if len(_shared) < SHARED_MAX:
        _shared[value] = value
    return value


def shared_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` (an ASGI scope's: lower-case names) with equal names, and equal values of
    :data:`SHARED_VALUE_NAMES`, as one object each across calls."""
    return [
        (name, _share(value) if name in SHARED_VALUE_NAMES else value)
        for name, value in ((_share(bytes(n)), bytes(v)) for n, v in headers)
    ]


class _Waiters:
    """Futures of the tasks waiting for something, made only while one waits. Each waiter has
    its own future, so cancelling one wait cancels no other."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    def _new_waiter(self) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            self._waiters = [waiter]
        else:
            # Waits given up (cancelled, timed out) since the last wake-up go now, so a caller
            # that keeps timing out does not grow the list.
            waiters[:] = [w for w in waiters if not w.done()]
            waiters.append(waiter)
        return waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)


class ReceiveQueue(_Waiters, Generic[T]):
    """What uvicorn's protocol uses of ``asyncio.Queue`` (``put_nowait``, ``get``, ``empty``),
    holding nothing while empty but the future of a waiting ``get``.

    ``asyncio.Queue`` allocates three deques and an ``Event`` (with a fourth) up front: ~3.5 KiB
    per connection, for a queue that holds at most a few messages (uvicorn pauses reading while
    one waits) and is empty whenever the connection is idle. Unbounded, as uvicorn's.
    """

    __slots__ = ("_items",)

    def __init__(self) -> None:
        super().__init__()
        self._items: list[T] | None = None

    def put_nowait(self, item: T) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        self._wake()

    def empty(self) -> bool:
        return self._items is None

    def qsize(self) -> int:
        return 0 if self._items is None else len(self._items)

    def get_nowait(self) -> T:
        """The oldest item; raises ``asyncio.QueueEmpty`` when there is none."""
        items = self._items
        if items is None:
            raise asyncio.QueueEmpty
        item = items.pop(0)
        if not items:
            self._items = None
        return item

    def wait(self) -> asyncio.Future[None]:
        """A future done once an item is put (at once if one is there): await it, then look
        again (another waiter may have taken the item)."""
        waiter = self._new_waiter()
        if self._items is not None:
            self._wake()
        return waiter

    async def get(self) -> T:
        while self._items is None:
            await self.wait()
        return self.get_nowait()


class Writable(_Waiters):
    """What uvicorn's protocol uses of ``asyncio.Event`` for its ``writable`` flag, with no
    waiter list until a ``send`` waits for a paused transport (``asyncio.Event`` allocates a deque
    per connection up front)."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        super().__init__()
        self._value = True

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        self._wake()

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        while not self._value:
            await self._new_waiter()
        return True
