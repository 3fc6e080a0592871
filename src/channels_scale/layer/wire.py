"""Connections the layer opens itself: TCP, TLS (``rediss://``) or unix socket, and the handshake.

The pipelined command connection (:mod:`.pipe`) and the pub/sub reader (:mod:`.reader`) are
asyncio protocols parsing replies with ``hiredis.Reader`` in ``data_received``. They used to take
over the transport of a connected redis-py connection through its private attributes; now
:func:`open_connection` opens the socket and runs the handshake with public asyncio and ssl APIs
only, so a redis-py release that changes its own handshake cannot break them.

Options read, from the host URL and its query string or from the host dict (the dict wins), with
redis-py's names and meaning: ``host``, ``port``, ``path``/``unix_socket_path`` (``unix://``),
``db``, ``username``, ``password``, ``client_name``, ``ssl`` (implied by ``rediss://``),
``ssl_cert_reqs`` (``"none"`` or ``None``, ``"optional"``, ``"required"``: default, or an
``ssl.VerifyMode``), ``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname`` (default: true when certificates are
required), ``socket_connect_timeout``.

Handshake, pipelined in one write and bounded by the caller's timeout: ``AUTH [username]
password`` when a password is set, ``SELECT db`` when ``db`` is not 0, ``CLIENT SETNAME`` when a
name is set. Any error reply fails the connection with :class:`HandshakeError` (a
``ConnectionError``: the layer's callers retry it like an outage and finally raise
``LayerUnavailable`` with the server's message).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis

from channels_scale.exceptions import ConfigError
from channels_scale.layer.config import HostConfig
from channels_scale.layer.sentinel import (
    is_master_role,
    is_sentinel_url,
    master_address,
    parse_sentinel_url,
)

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_TRUE = {"1", "true", "yes", "on"}


class HandshakeError(ConnectionError):
    """The server refused the handshake (wrong password, unknown db...)."""


def _encode(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def connection_options(host: HostConfig) -> dict[str, Any]:
    """Every connection option of ``host`` as one dict (URL first, then the host dict)."""
    options: dict[str, Any] = {"host": "localhost", "port": 6379, "db": 0}
    if is_sentinel_url(host.url):
        # the address comes from Sentinel at connect time (open_connection); ROLE is checked
        spec = parse_sentinel_url(str(host.url))
        options.update(spec.options, db=spec.db, sentinel=spec, require_master=True)
        if spec.username:
            options["username"] = spec.username
        if spec.password:
            options["password"] = spec.password
    elif host.url is not None:
        url = urlparse(host.url)
        if url.scheme == "unix":
            options["path"] = unquote(url.path)
        else:
            options["host"] = url.hostname or "localhost"
            options["port"] = url.port or 6379
            if url.path.strip("/"):
                options["db"] = int(url.path.strip("/"))
        if url.scheme == "rediss":
            options["ssl"] = True
        if url.username:
            options["username"] = unquote(url.username)
        if url.password:
            options["password"] = unquote(url.password)
        for name, values in parse_qs(url.query).items():
            options[name] = values[-1]
    options.update(_from_kwargs(host.kwargs))
    return options


def _from_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    options = dict(kwargs)
    if "unix_socket_path" in options:
        options["path"] = options.pop("unix_socket_path")
    return options


def _ssl_context(options: Mapping[str, Any]) -> ssl.SSLContext | None:
    enabled = options.get("ssl", False)
    if isinstance(enabled, str):
        enabled = enabled.lower() in _TRUE
    if not enabled:
        return None
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    reqs = options.get("ssl_cert_reqs", "required")
    if reqs is None:
        verify = ssl.CERT_NONE  # as redis-py reads it (channels_redis' docs write None)
    elif isinstance(reqs, str):
        if reqs.lower() not in _CERT_REQS:
            raise ConfigError(f"ssl_cert_reqs must be one of none, optional, required: {reqs!r}")
        verify = _CERT_REQS[reqs.lower()]
    else:
        verify = ssl.VerifyMode(reqs)
    check = options.get("ssl_check_hostname", verify == ssl.CERT_REQUIRED)
    if isinstance(check, str):
        check = check.lower() in _TRUE
    context.check_hostname = bool(check) and verify != ssl.CERT_NONE
    context.verify_mode = verify
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context


def handshake_commands(options: Mapping[str, Any]) -> list[bytes]:
    """The handshake's commands, in order (pure; tested alone)."""
    commands: list[bytes] = []
    password = options.get("password")
    if password:
        username = options.get("username")
        commands.append(
            _encode(b"AUTH", username, password) if username else _encode(b"AUTH", password)
        )
    db = int(options.get("db") or 0)
    if db:
        commands.append(_encode(b"SELECT", db))
    name = options.get("client_name")
    if name:
        commands.append(_encode(b"CLIENT", b"SETNAME", name))
    if options.get("require_master"):
        commands.append(_encode(b"ROLE"))  # last: _Handshake checks its reply
    return commands


class _Handshake(asyncio.Protocol):
    """Reads the handshake's replies; the caller then hands the transport to the real protocol."""

    def __init__(self, expected: int, require_master: bool = False) -> None:
        self.reader = hiredis.Reader()
        self.expected = expected
        self.require_master = require_master
        self.replies: list[Any] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not expected:
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.replies.append(reply)
            if isinstance(reply, hiredis.ReplyError) and not self.done.done():
                self.done.set_exception(HandshakeError(f"Redis refused the handshake: {reply}"))
            elif len(self.replies) >= self.expected and not self.done.done():
                if self.require_master and not is_master_role(reply):
                    # a sentinel named a server that is no master (any more): never write there
                    self.done.set_exception(HandshakeError("the server is not a master (ROLE)"))
                else:
                    self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection closed in handshake: {exc}"))


async def open_connection(
    host: HostConfig, protocol: asyncio.Protocol, handshake_timeout: float
) -> asyncio.Transport:
    """Open a connection to ``host``, run the handshake, and hand the transport to ``protocol``.

    Raises:
        OSError, ConnectionError (:class:`HandshakeError`), TimeoutError: not connected.
    """
    options = connection_options(host)
    loop = asyncio.get_running_loop()
    commands = handshake_commands(options)
    handshake = _Handshake(len(commands), bool(options.get("require_master")))
    timeout = float(options.get("socket_connect_timeout") or handshake_timeout)
    transport: Any = None
    try:
        async with asyncio.timeout(timeout):
            if options.get("sentinel") is not None:
                sentinel = options["sentinel"]
                options["host"], options["port"] = await master_address(
                    sentinel, timeout / (len(sentinel.sentinels) + 1)
                )
            if options.get("path"):
                transport, _ = await loop.create_unix_connection(lambda: handshake, options["path"])
            else:
                context = _ssl_context(options)
                transport, _ = await loop.create_connection(
                    lambda: handshake,
                    options["host"],
                    int(options["port"]),
                    ssl=context,
                    server_hostname=options["host"] if context is not None else None,
                )
            if commands:
                transport.write(b"".join(commands))
            await handshake.done
    except BaseException:
        if transport is not None:
            transport.abort()
        raise
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # as the pools do
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return transport  # type: ignore[no-any-return]
