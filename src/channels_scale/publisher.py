"""Publishing from sync Django code (views, signals, Celery/RQ tasks, management commands).

::

    import channels_scale

    channels_scale.publish("chat.lobby", {"type": "chat.message", "text": "hi"})
    channels_scale.publish_json("chat.lobby", {"text": "hi"})     # our consumers' client.frame
    channels_scale.publish_stream("chat.lobby", {"text": "hi"})   # StreamConsumer, with history

``async_to_sync(layer.group_send)`` outside an event loop makes a new event loop per call, and
with it (for a per-loop layer such as ours or channels_redis) new connections and a new sender
identity: every call is "the first message" of a new sender. Here instead one background thread
per process runs one event loop for the whole process life; a call hands its coroutine to that
loop (``asyncio.run_coroutine_threadsafe``) and waits for the result. So:

- **One connection set, one sender.** The layer's per-loop state (connections, inbox id, the
  origin and sequence numbers that let receivers drop a retried publish) lives in that loop and
  lasts as long as the process.
- **Thread-safe, started lazily.** The first call starts the thread; any number of threads may
  call at once. A thread's own calls are delivered in the order made (each call waits for its
  result before returning); calls of different threads are not ordered against each other.
- **Redis down.** The layer retries for its ``send_timeout`` (channels-scale's layer: the
  ``send_timeout`` option, default 10 s; other layers: 10 s) and raises
  :class:`~channels_scale.exceptions.LayerUnavailable`; if the background loop gives no answer
  within ``send_timeout`` + :data:`ANSWER_MARGIN` the call is cancelled and raises the same.
- **fork().** A child process (gunicorn/Celery prefork workers) starts its own thread and loop on
  its first call and gets its own sender identity; the parent's thread does not exist there.
- **Event loops.** From a thread running an event loop (a coroutine, an async view, the
  publisher's own loop) the calls raise :class:`PublishInEventLoop` instead of blocking that loop:
  ``await channel_layer.group_send(...)`` there. From sync code that async code runs through
  ``sync_to_async`` they work (that code runs in another thread).
- **Exit.** The thread is stopped at interpreter exit (``atexit``; bounded by
  :data:`SHUTDOWN_TIMEOUT`, it is a daemon thread, so exit never hangs on it);
  :func:`shutdown` does it earlier (tests, a worker's shutdown hook).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from channels.layers import get_channel_layer

from channels_scale.exceptions import ChannelsScaleError, ConfigError, LayerUnavailable
from channels_scale.layer import RedisChannelLayer

__all__ = [
    "ANSWER_MARGIN",
    "DEFAULT_SEND_TIMEOUT",
    "PublishInEventLoop",
    "Publisher",
    "publish",
    "publish_json",
    "publish_stream",
    "publisher",
    "shutdown",
]

T = TypeVar("T")

#: seconds a call waits beyond the layer's ``send_timeout`` (the layer may overrun it by one
#: watchdog period, 0.5 s) before it gives up on the background loop
ANSWER_MARGIN = 1.0
#: the wait for layers that have no ``send_timeout`` option (channels_redis, Channels' own)
DEFAULT_SEND_TIMEOUT = 10.0
#: seconds :func:`shutdown` (and the exit hook) waits for the thread to close its connections
SHUTDOWN_TIMEOUT = 2.0
DEFAULT_ALIAS = "default"


class PublishInEventLoop(ChannelsScaleError, RuntimeError):
    """A sync publish was called from a thread running an event loop (it would block it)."""


class Publisher:
    """One daemon thread running one event loop, on which every publish of the process runs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.thread = threading.Thread(
            target=self._run, name="channels_scale-publisher", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            # Layers that keep per-loop connections (ours, channels_redis) close them with the
            # loop (they wrap ``loop.close``).
            loop.close()

    def run(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float, what: str) -> T:
        """Run ``make()`` on the loop; wait at most ``timeout`` s for it, then cancel it and
        raise :class:`LayerUnavailable`."""
        coroutine = make()
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        except RuntimeError:  # the loop closed meanwhile (shutdown() in another thread)
            coroutine.close()
            raise LayerUnavailable(f"{what}: the publisher was shut down") from None
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LayerUnavailable(f"{what}: no answer within {timeout:.1f} s") from None
        except concurrent.futures.CancelledError:  # the loop stopped with the call pending
            raise LayerUnavailable(f"{what}: the publisher was shut down") from None

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop the loop, close its connections, wait at most ``timeout`` s for the thread."""
        if self.thread is threading.current_thread():
            raise PublishInEventLoop("shutdown() from the publisher's own loop")
        with contextlib.suppress(RuntimeError):  # closed already
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


_lock = threading.Lock()
_publisher: Publisher | None = None
#: publishers inherited through fork(): kept referenced, never used nor closed, because their
#: loop's selector and sockets are the parent's (closing or collecting them here is the parent's
#: business, not the child's)
_inherited: list[Publisher] = []


def publisher() -> Publisher:
    """This process' publisher, started on first use (thread-safe, per process)."""
    global _publisher
    current = _publisher
    if current is not None and current.pid == os.getpid():
        return current
    with _lock:
        current = _publisher
        if current is None or current.pid != os.getpid() or not current.thread.is_alive():
            if current is not None and current.pid != os.getpid():
                _inherited.append(current)
            current = _publisher = Publisher()
        return current


def shutdown(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Stop this process' publisher thread and close its connections (the next publish starts a
    new one). Registered with ``atexit``."""
    global _publisher
    with _lock:
        current, _publisher = _publisher, None
    if current is not None and current.pid == os.getpid():
        current.stop(timeout)


def _after_fork_in_child() -> None:
    # The parent's publisher thread does not exist here, and the lock may have been held by
    # another thread of the parent at fork() time.
    global _lock, _publisher
    _lock = threading.Lock()
    if _publisher is not None:
        _inherited.append(_publisher)
        _publisher = None


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)


def _channel_layer(alias: str) -> Any:
    layer = get_channel_layer(alias)
    if layer is None:
        raise ConfigError(f"no channel layer {alias!r}: set CHANNEL_LAYERS in the Django settings")
    return layer


def _send_timeout(layer: Any) -> float:
    # Only ours is asked: channels_redis' pub/sub layer forwards attribute reads to its per-loop
    # layer, which needs a running loop.
    if isinstance(layer, RedisChannelLayer):
        return layer.config.send_timeout
    return DEFAULT_SEND_TIMEOUT


def _run(alias: str, what: str, make: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        current = _publisher
        where = (
            "the publisher's own event loop"
            if current is not None and running is current.loop
            else "a running event loop"
        )
        raise PublishInEventLoop(
            f"{what} is the sync API and was called from {where}, which it would block: "
            "await channel_layer.group_send(group, message) there instead (or call this from "
            "sync code run with sync_to_async)"
        )
    layer = _channel_layer(alias)
    timeout = _send_timeout(layer) + ANSWER_MARGIN
    return publisher().run(lambda: make(layer), timeout, what)


def publish(group: str, message: dict[str, Any], *, alias: str = DEFAULT_ALIAS) -> None:
    """``group_send(group, message)`` on the ``alias`` channel layer, from sync code.

    Blocks until the layer has published (one round trip to Redis) and raises what
    ``group_send`` raises: :class:`TypeError` (bad group name or message),
    :class:`~channels_scale.exceptions.MessageTooLarge`,
    :class:`~channels_scale.exceptions.LayerUnavailable` (Redis unreachable for
    ``send_timeout``); plus :class:`PublishInEventLoop` from a thread running an event loop and
    :class:`~channels_scale.exceptions.ConfigError` when the alias has no layer.
    """

    async def send(layer: Any) -> None:
        await layer.group_send(group, message)

    _run(alias, f"publish({group!r})", send)


def publish_json(
    group: str,
    content: Any,
    *,
    type: str | None = None,
    alias: str = DEFAULT_ALIAS,
) -> str:
    """Encode ``content`` once and publish it as a ``client.frame`` event: each member of our
    consumers sends the text as is (the sync form of
    :func:`channels_scale.consumers.group_send_json`). Returns the encoded text."""
    from channels_scale.consumers.frames import FRAME_TYPE, group_send_json

    frame_type = FRAME_TYPE if type is None else type

    async def send(layer: Any) -> str:
        return await group_send_json(layer, group, content, type=frame_type)

    return _run(alias, f"publish_json({group!r})", send)


def publish_stream(group: str, content: Any, *, alias: str = DEFAULT_ALIAS) -> str:
    """Publish ``content`` to ``group``'s stream as :class:`~channels_scale.history.consumer.
    StreamConsumer` expects (stored in the group's history when it keeps one): the sync form of
    :func:`channels_scale.history.consumer.publish`. Returns the encoded text."""
    from channels_scale.history.consumer import publish as stream_publish

    async def send(layer: Any) -> str:
        return await stream_publish(layer, group, content)

    return _run(alias, f"publish_stream({group!r})", send)
