"""Django database-connection hygiene for long-lived consumers, without a thread hop per message.

Why Channels hops. Django closes a connection that is too old (``CONN_MAX_AGE``), broken (an error
left ``errors_occurred`` set and the connection does not answer), or left outside autocommit, in
:func:`django.db.close_old_connections`, which HTTP runs at the start and end of every request.
A websocket consumer lives for hours, so Channels ≥ 4.2 calls it before *every* handler
(``await aclose_old_connections()`` in ``AsyncConsumer.dispatch``). Django connections are
thread-local (``ConnectionHandler.thread_critical``) and the ORM runs in asgiref's one
thread-sensitive thread, so that call is a hop to that thread: two loop wake-ups, a future, a
context copy, a thread switch, per delivered message, whether or not the handler uses the DB.

What we do instead. :func:`django.db.close_old_connections` only acts on a connection wrapper
that has an open connection *and* one of these no-I/O conditions holds (see
``BaseDatabaseWrapper.close_if_unusable_or_obsolete``):

- ``errors_occurred`` (it would ping, and close if dead);
- ``close_at`` has passed (``CONN_MAX_AGE`` reached; with ``CONN_MAX_AGE = 0`` right after use);
- ``autocommit`` differs from the ``AUTOCOMMIT`` setting;
- health checks are on (``CONN_HEALTH_CHECKS``) and ``health_check_done`` is set: the call
  resets the flag so the next use pings first (this is what saves a handler from a connection
  killed under it).

Every connection wrapper that ever connects is recorded when it connects (Django's
``connection_created`` signal, sent in the connecting thread), weakly. Before and after each
handler, :func:`cleanup_due` reads those flags from the event loop (attribute reads, no I/O, no
lock) and, only when one of them says ``close_old_connections`` would act, the consumer hops to
the DB thread and runs it there (:func:`aclose_old_connections`), exactly as Channels does.

Why that is safe:

- The hop runs the very function Channels runs, in the same thread; we only skip it when it
  would have been a no-op. So a handler never starts with a connection Channels would have
  closed, and a connection used through the async ORM (``aget``, ``acreate``..., or a plain
  ``sync_to_async``) with ``CONN_MAX_AGE = 0`` is closed right *after* the handler (Channels
  leaves it open until the next message, which on a quiet socket may be hours: a leak).
- ``channels.db.database_sync_to_async`` already runs ``close_old_connections`` in the DB thread
  before and after the wrapped call, so DB work through it never makes a hop due here.
- The reads race only with the DB thread itself (other consumers' calls). A stale read can only
  postpone a cleanup to the next check, and Channels' own check has the same window (the DB
  thread may run another consumer's call between its hop and the handler's query). All state
  changes happen in the DB thread.
- Only connections of the thread(s) the hop runs in count (Channels' hop cannot act on others).
  Connections that existed before this module was imported were not seen connecting: the first
  check in a process therefore always hops, and a hop in a new thread records its connections.
- The hop calls ``channels.db.close_old_connections`` (Django's function, looked up at call
  time), so ``channels.testing`` communicators, which patch it to a no-op, treat both alike.
- Checks cost a loop over the recorded wrappers (one per database alias per thread that used
  the DB; usually one) when the DB is in use, and an empty loop when it is not.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import channels.db
from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.signals import connection_created

__all__ = ["aclose_old_connections", "cleanup_due", "connection_needs_cleanup"]

_lock = threading.Lock()
# Copy-on-write: readers on the event loop iterate tuples that are never mutated in place.
# Each entry: (the id of the thread that opened the connection, a weak reference to its wrapper).
_tracked: tuple[tuple[int, weakref.ref[Any]], ...] = ()
# The threads our hop has run in (asgiref's thread-sensitive thread; one under an ASGI server).
# Empty until the first hop, so the first check in a process always hops.
_hop_threads: frozenset[int] = frozenset()


def _track(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    """Record ``connection`` (a Django ``BaseDatabaseWrapper``) and its thread, weakly."""
    global _tracked
    if connection is None:
        return
    thread = threading.get_ident()
    with _lock:
        kept = [
            (tid, ref)
            for tid, ref in _tracked
            if (conn := ref()) is not None and conn is not connection
        ]
        kept.append((thread, weakref.ref(connection)))
        _tracked = tuple(kept)


connection_created.connect(_track, dispatch_uid="channels_scale.consumers.dbhygiene")


def connection_needs_cleanup(conn: Any) -> bool:
    """Whether ``close_old_connections`` would act on ``conn`` now (reads only, no I/O)."""
    if conn.connection is None:
        return False
    if conn.errors_occurred:
        return True
    close_at = conn.close_at
    if close_at is not None and time.monotonic() >= close_at:
        return True
    if conn.autocommit != conn.settings_dict["AUTOCOMMIT"]:
        return True
    return bool(conn.health_check_enabled and conn.health_check_done)


def cleanup_due() -> bool:
    """Whether a connection of the DB thread needs :func:`aclose_old_connections` (no I/O).

    Only connections opened in a thread the hop runs in count: ``close_old_connections`` there
    cannot act on another thread's connections (Django's are thread-local), so Channels' hop
    ignores them too.
    """
    threads = _hop_threads
    if not threads:
        return True
    for thread, ref in _tracked:
        if thread in threads:
            conn = ref()
            if conn is not None and connection_needs_cleanup(conn):
                return True
    return False


def _close_old_connections_and_track() -> None:
    global _hop_threads
    thread = threading.get_ident()
    if thread not in _hop_threads:
        for conn in connections.all(initialized_only=True):
            _track(connection=conn)
        with _lock:
            _hop_threads = _hop_threads | {thread}
    # Looked up through channels.db at call time, as Channels' own hop does: Channels' test
    # communicators patch it to a no-op, and tests written for Channels must see the same here.
    channels.db.close_old_connections()


#: ``close_old_connections`` in asgiref's thread-sensitive (DB) thread, as Channels' own
#: ``aclose_old_connections``; it also records the connections that thread already holds.
aclose_old_connections = sync_to_async(_close_old_connections_and_track, thread_sensitive=True)
