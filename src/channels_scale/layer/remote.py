"""``group_add`` of another process' channel, acknowledged (one per event loop, no I/O of its own).

The requester sends ``GROUP_ADD`` to the owner's inbox and waits (``send_timeout`` at most) for
``GROUP_ADDED``, which the owner sends once it has joined and Redis confirmed its SUBSCRIBE: a
``group_send`` made after ``group_add`` returns, from any process, reaches the channel (Channels'
semantics). Without the answer, a ``group_send`` right after could reach Redis before the
owner's SUBSCRIBE and be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from channels_scale.layer import codec
from channels_scale.layer.broker import Broker
from channels_scale.layer.router import Router

logger = logging.getLogger("channels_scale.layer")

#: sends one control frame ``(kind, inbox, group, channel)``; False when nobody listens
Control = Callable[[int, str, str, str], Awaitable[bool]]


class RemoteAdds:
    """Both sides of an acknowledged remote ``group_add`` (see the module docstring)."""

    def __init__(self, router: Router, broker: Broker, control: Control, timeout: float) -> None:
        self.inbox_id = router.inbox_id
        self.router = router
        self.broker = broker
        self.control = control
        self.timeout = timeout
        #: requesters waiting for GROUP_ADDED: (group, channel) -> futures
        self._waiting: dict[tuple[str, str], list[asyncio.Future[None]]] = {}
        #: answers being sent (each waits for its group's subscription first)
        self.tasks: set[asyncio.Task[None]] = set()
        #: control frames are sent in the order the calls were made (a group_add waiting for
        #: its inbox subscription must not be overtaken by a later group_discard); FIFO
        self._order = asyncio.Lock()

    async def add(self, inbox: str, group: str, channel: str) -> None:
        """Requester: GROUP_ADD to ``inbox``, then wait for the answer (bounded)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = (group, channel)
        self._waiting.setdefault(key, []).append(future)
        try:
            async with self._order:
                await self.broker.subscribe_inbox(self.inbox_id)  # where the answer arrives
                if not await self.control(codec.GROUP_ADD, inbox, group, channel):
                    return  # nobody listens on that inbox (counted undeliverable)
            async with asyncio.timeout(self.timeout):
                await future
        except TimeoutError:
            # the owner is slow (or older, without answers): the membership still takes effect
            # when it processes the frame
            logger.warning(
                "group_add(%r, %r): no acknowledgement from the channel's owner within %s s",
                group, channel, self.timeout,
            )  # fmt: skip
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None:
                with contextlib.suppress(ValueError):
                    waiting.remove(future)
                if not waiting:
                    del self._waiting[key]

    async def discard(self, inbox: str, group: str, channel: str) -> None:
        """GROUP_DISCARD to ``inbox``, after every earlier control frame (not acknowledged)."""
        async with self._order:
            await self.control(codec.GROUP_DISCARD, inbox, group, channel)

    def frame_applied(self) -> None:
        """After the router applied a frame: answer GROUP_ADDs, wake requesters answered."""
        router = self.router
        if not router.joined and not router.added:
            return
        if router.joined:
            loop = asyncio.get_running_loop()
            for origin, group, channel in router.joined:
                task = loop.create_task(self._answer(origin, group, channel))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            router.joined.clear()
        if router.added:
            for key in router.added:
                for future in self._waiting.pop(key, ()):
                    if not future.done():
                        future.set_result(None)
            router.added.clear()

    async def _answer(self, origin: str, group: str, channel: str) -> None:
        """Owner: GROUP_ADDED to ``origin`` once subscribed to ``group``."""
        try:
            if group in self.router.groups:
                # (not when a later GROUP_DISCARD emptied it: that would subscribe again)
                await self.broker.wait_subscribed(group)
            await self.control(codec.GROUP_ADDED, origin, group, channel)
        except Exception:  # the requester stops waiting at its timeout
            logger.warning("group_add acknowledgement to %s not sent", origin, exc_info=True)
