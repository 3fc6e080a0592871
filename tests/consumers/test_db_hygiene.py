"""Django DB-connection hygiene in long-lived consumers, Channels' and ours, on SQLite.

A handler reaches the DB in asgiref's one thread-sensitive thread ("the DB thread"), through the
async ORM (``acount()``: a plain ``sync_to_async``, no hygiene of its own) or through Channels'
``database_sync_to_async`` (which runs ``close_old_connections`` around the call). The tests look
at the DB thread's connection wrapper directly.

"A connection killed under it": we close the raw ``sqlite3`` connection underneath Django, as a
database server or a proxy would drop a socket. SQLite's ``is_usable()`` always answers True
(a local file cannot go away), which would make Django keep a dead connection whatever a consumer
does; the tests give it PostgreSQL's definition (run ``SELECT 1``), so the code path exercised is
the one Django runs for a network database. (The same scenario on a real PostgreSQL, killed with
``pg_terminate_backend``, needs psycopg in the environment: not part of this suite yet.)
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator as BaseCommunicator
from channels.db import database_sync_to_async
from channels.generic import websocket as channels_ws
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import DatabaseError, connections
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper

from channels_scale import consumers as ours
from channels_scale.consumers import dbhygiene
from tests.consumers.conftest import wait

pytestmark = pytest.mark.django_db(transaction=True)


class Communicator(WebsocketCommunicator):
    """Channels' communicator without its patch of ``channels.db.close_old_connections``.

    ``channels.testing`` replaces it with a no-op while a test sends or waits for output
    (channels/testing/application.py), which would switch off the very hygiene tested here, for
    Channels' consumers and ours alike.
    """

    async def send_input(self, message: Any) -> None:
        await BaseCommunicator.send_input(self, message)

    async def receive_output(self, timeout: float = 1) -> Any:  # noqa: ASYNC109 (the API)
        return await BaseCommunicator.receive_output(self, timeout)


def build(base: type[Any]) -> type[Any]:
    class Orm(base):  # type: ignore[misc,valid-type]
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            try:
                if text_data == "async":
                    count = await User.objects.acount()
                elif text_data == "dsa":
                    count = await database_sync_to_async(User.objects.count)()
                else:
                    await self.send(text_data="pong")
                    return
            except DatabaseError:
                await self.send(text_data="db-error")
                return
            await self.send(text_data=str(count))

    return Orm


FAMILIES = {
    "channels": build(channels_ws.AsyncWebsocketConsumer),
    "ours": build(ours.AsyncWebsocketConsumer),
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@sync_to_async
def db_thread_connection() -> Any:
    """The raw DB-API connection of the DB thread (None when closed)."""
    return connections["default"].connection


@sync_to_async
def kill_db_thread_connection() -> None:
    """Close the raw connection underneath Django (Django still believes it is open)."""
    connections["default"].connection.close()


@pytest.fixture
def db_settings() -> Iterator[Any]:
    """Change the default database's connection settings for one test (and the DB thread's)."""
    settings_dict = connections.settings["default"]
    saved = {key: settings_dict[key] for key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS")}

    def apply(**values: Any) -> None:
        settings_dict.update(values)

    # fresh_db_thread closed the DB thread's connection: it reads these at its next connect.
    yield apply
    settings_dict.update(saved)


@sync_to_async
def close_db_thread_connection() -> None:
    connections["default"].close()


@pytest.fixture(autouse=True)
async def fresh_db_thread() -> None:
    await close_db_thread_connection()


@pytest.fixture(autouse=True)
def closable_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the DB thread's connection really close, as a file or network database's would.

    The test database is a shared in-memory SQLite; Django ignores ``close()`` on in-memory
    databases so that the last connection does not destroy it. The test thread's own connection
    keeps it alive here, so the DB thread's connection can be closed like any other.
    """
    monkeypatch.setattr(SQLiteWrapper, "is_in_memory_db", lambda self: False)


@pytest.fixture
def realistic_is_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    def is_usable(self: Any) -> bool:
        try:
            self.connection.execute("SELECT 1")
        except sqlite3.Error:
            return False
        return True

    monkeypatch.setattr(SQLiteWrapper, "is_usable", is_usable)


async def ask(ws: WebsocketCommunicator, text: str) -> str:
    await ws.send_to(text_data=text)
    reply: str = await ws.receive_from(timeout=wait())
    return reply


async def eventually(predicate: Any, seconds: float = 1.0) -> bool:
    for _ in range(int(seconds / 0.01)):
        if await predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(await predicate())


async def is_closed() -> bool:
    return await db_thread_connection() is None


@pytest.fixture
async def ws(family: str) -> Any:
    communicator = Communicator(FAMILIES[family].as_asgi(), "/ws/")
    assert (await communicator.connect(timeout=wait()))[0]
    yield communicator
    await communicator.disconnect(timeout=wait())


async def test_conn_max_age_0_async_orm_leaves_no_open_connection(
    family: str, ws: WebsocketCommunicator, db_settings: Any
) -> None:
    db_settings(CONN_MAX_AGE=0)
    assert await ask(ws, "async") == "0"
    if family == "ours":
        # closed right after the handler, not at the next message
        assert await eventually(is_closed)
    else:
        # Channels closes it only before the next handler: open until the socket speaks again
        await asyncio.sleep(0.1)
        assert not await is_closed()
        assert await ask(ws, "ping") == "pong"
        assert await is_closed()


@pytest.mark.parametrize("path", ["async", "dsa"])
async def test_persistent_connection_is_reused(
    family: str, ws: WebsocketCommunicator, db_settings: Any, path: str
) -> None:
    db_settings(CONN_MAX_AGE=600)
    assert await ask(ws, path) == "0"
    first = await db_thread_connection()
    assert first is not None
    for _ in range(10):
        assert await ask(ws, path) == "0"
        assert await db_thread_connection() is first


@pytest.mark.parametrize("path", ["async", "dsa"])
async def test_no_hop_when_no_connection_needs_cleanup(
    monkeypatch: pytest.MonkeyPatch, db_settings: Any, path: str
) -> None:
    await dbhygiene.aclose_old_connections()  # the process' first hop (records the DB thread)
    hops = 0
    real = dbhygiene.aclose_old_connections

    async def counting() -> None:
        nonlocal hops
        hops += 1
        await real()

    monkeypatch.setattr(dbhygiene, "aclose_old_connections", counting)
    db_settings(CONN_MAX_AGE=600)
    communicator = Communicator(FAMILIES["ours"].as_asgi(), "/ws/")
    assert (await communicator.connect(timeout=wait()))[0]
    for _ in range(10):
        assert await ask(communicator, "ping") == "pong"
        assert await ask(communicator, path) == "0"
    await communicator.disconnect(timeout=wait())
    assert hops == 0


@pytest.mark.parametrize("path", ["async", "dsa"])
async def test_connection_past_max_age_is_replaced(
    ws: WebsocketCommunicator, db_settings: Any, path: str
) -> None:
    db_settings(CONN_MAX_AGE=0.3)
    assert await ask(ws, path) == "0"
    await asyncio.sleep(0.4)
    assert await ask(ws, path) == "0"
    # the old one was closed before use, and a new one closed as soon as it too was obsolete
    assert await eventually(is_closed) or await ask(ws, "ping") == "pong"
    await asyncio.sleep(0.4)
    assert await ask(ws, "ping") == "pong"
    assert await eventually(is_closed)


@pytest.mark.usefixtures("realistic_is_usable")
@pytest.mark.parametrize("path", ["async", "dsa"])
async def test_killed_connection_with_health_checks(
    ws: WebsocketCommunicator, db_settings: Any, path: str
) -> None:
    """CONN_HEALTH_CHECKS: the handler after the kill gets a working connection, no error."""
    db_settings(CONN_MAX_AGE=600, CONN_HEALTH_CHECKS=True)
    assert await ask(ws, path) == "0"
    dead = await db_thread_connection()
    await kill_db_thread_connection()
    assert await ask(ws, path) == "0"
    assert await db_thread_connection() not in (None, dead)


@pytest.mark.usefixtures("realistic_is_usable")
@pytest.mark.parametrize("path", ["async", "dsa"])
async def test_killed_connection_without_health_checks(
    ws: WebsocketCommunicator, db_settings: Any, path: str
) -> None:
    """No health checks: one query fails on the dead connection, the next gets a new one."""
    db_settings(CONN_MAX_AGE=600, CONN_HEALTH_CHECKS=False)
    assert await ask(ws, path) == "0"
    dead = await db_thread_connection()
    await kill_db_thread_connection()
    assert await ask(ws, path) == "db-error"
    assert await ask(ws, path) == "0"
    assert await db_thread_connection() not in (None, dead)
