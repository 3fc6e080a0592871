"""Redis Sentinel: a ``redis+sentinel://`` host is the master that Sentinel names, found anew on
every (re)connect.

URL: ``redis+sentinel://[[user]:password@]host:port[,host:port...]/master_name[?options]``. The
user and password are the *master's* (as in ``redis://``); the sentinels' own password comes from
``?sentinel_password=`` (and ``?sentinel_username=``); ``?db=N`` selects a database; the other
query options are connection options as in ``redis://`` (``client_name``,
``socket_connect_timeout``).

How the layer follows the master (the hooks live where connections are opened: :mod:`.wire` for
the layer's own connections, :func:`master_connection_class` for the redis-py pools):

- before each connection, :func:`master_address` asks the sentinels in the configured order,
  one after the other, ``SENTINEL GET-MASTER-ADDR-BY-NAME``; the first address given wins;
- after connecting, ``ROLE`` must answer ``master``, otherwise the connection is dropped and the
  caller retries (a sentinel that has not seen the failover yet names the old master, which
  may come back as a replica): the layer never writes to a replica;
- a ``-READONLY`` reply (the master was demoted while we were connected) drops the connection
  and is retried like an outage, so the next connect asks Sentinel again.

Nothing is cached: a connect costs one more round trip (to the first sentinel that answers),
and connects are rare (start, outages, failovers).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.asyncio import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError

SCHEME = "redis+sentinel"


class SentinelError(ConnectionError):
    """No sentinel gave the master's address (all unreachable, or none knows the name)."""


@dataclass(frozen=True)
class SentinelSpec:
    """A parsed ``redis+sentinel://`` URL (pure)."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    #: other query options, passed on as connection options of the master
    options: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """Where this host is, without passwords (for logs and errors)."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"{SCHEME}://{hosts}/{self.master_name}"


def is_sentinel_url(url: str | None) -> bool:
    return url is not None and url.lower().startswith(SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelSpec:
    """Parse a ``redis+sentinel://`` URL.

    Raises:
        ValueError: no sentinel, a bad port, no master name, a bad ``db``.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    credentials, _, hosts = netloc.rpartition("@")
    username = password = None
    if credentials:
        user, _, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) or None
    sentinels: list[tuple[str, int]] = []
    for entry in hosts.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host:
            host, port = port, "26379"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad sentinel address {entry!r} in {_redacted(url)!r}")
        sentinels.append((host.strip("[]"), int(port)))
    master_name = unquote(parts.path.strip("/"))
    if not master_name or "/" in master_name:
        raise ValueError(
            f"{_redacted(url)!r} must name the master: redis+sentinel://host:port/master_name"
        )
    options = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    db = options.pop("db", "0")
    if not db.isdigit():
        raise ValueError(f"db must be a number in {_redacted(url)!r}")
    return SentinelSpec(
        tuple(sentinels),
        master_name,
        int(db),
        username,
        password,
        options.pop("sentinel_username", None),
        options.pop("sentinel_password", None),
        options,
    )


def _redacted(url: str) -> str:
    _, at, tail = url.rpartition("@")
    return f"{SCHEME}://***@{tail}" if at else url


def _command(*args: str) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


async def _ask(spec: SentinelSpec, host: str, port: int) -> Any:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        commands = []
        if spec.sentinel_password:
            auth = ("AUTH", spec.sentinel_username) if spec.sentinel_username else ("AUTH",)
            commands.append(_command(*auth, spec.sentinel_password))
        commands.append(_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", spec.master_name))
        writer.write(b"".join(commands))
        parser = hiredis.Reader()
        replies: list[Any] = []
        while len(replies) < len(commands):
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("connection closed")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise SentinelError(str(reply))
                replies.append(reply)
        return replies[-1]
    finally:
        writer.close()


async def master_address(spec: SentinelSpec, per_sentinel: float) -> tuple[str, int]:
    """Ask each sentinel in turn (at most ``per_sentinel`` seconds each) for the master's
    address; the first answer wins.

    Raises:
        SentinelError: no sentinel answered with an address (each one's reason in the message).
    """
    problems: list[str] = []
    for host, port in spec.sentinels:
        try:
            async with asyncio.timeout(per_sentinel):
                reply = await _ask(spec, host, port)
        except (OSError, TimeoutError, SentinelError) as exc:
            problems.append(f"{host}:{port}: {exc or type(exc).__name__}")
            continue
        if isinstance(reply, list) and len(reply) == 2:
            return reply[0].decode(), int(reply[1])
        problems.append(f"{host}:{port}: does not monitor a master named {spec.master_name!r}")
    raise SentinelError(
        f"no sentinel of {spec.describe()} gave the master's address ({'; '.join(problems)})"
    )


def is_master_role(reply: Any) -> bool:
    """True when a ``ROLE`` reply says ``master``."""
    return isinstance(reply, list) and bool(reply) and reply[0] == b"master"


def master_connection_class(spec: SentinelSpec, timeout: float) -> type[Connection]:
    """A redis-py connection class (for the layer's redis-py pools) that connects to the master
    named by Sentinel, checks ``ROLE``, and drops itself on ``-READONLY``."""

    class SentinelMasterConnection(Connection):
        async def connect_check_health(
            self, check_health: bool = True, retry_socket_connect: bool = True
        ) -> None:
            if self.is_connected:
                return
            try:
                self.host, self.port = await master_address(spec, timeout)
            except SentinelError as exc:
                raise RedisConnectionError(str(exc)) from exc
            await super().connect_check_health(check_health, retry_socket_connect)
            await self.send_command("ROLE")
            role = await super().read_response()
            if not is_master_role(role):
                await self.disconnect()
                raise RedisConnectionError(
                    f"{self.host}:{self.port}, named by {spec.describe()}, is not a master"
                )

        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().read_response(*args, **kwargs)
            except ReadOnlyError as exc:
                # the master was demoted under us: reconnect, which asks Sentinel again
                await self.disconnect()
                raise RedisConnectionError(f"{spec.describe()}: master demoted ({exc})") from exc

    return SentinelMasterConnection
