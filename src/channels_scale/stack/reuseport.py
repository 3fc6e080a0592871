"""One worker of ``--lb direct``: uvicorn on a shared public port and on its own unix socket.

``python -m channels_scale.stack.reuseport --listen HOST:PORT UVICORN_ARGS...``

The workers of a direct stack share the public port: each binds its own listening socket with
``SO_REUSEPORT`` and the kernel spreads new connections over them (a hash of the addresses), so no
proxy process reads and writes every frame once more. Each worker also listens on its unix socket
(``--uds`` among the uvicorn arguments): nginx proxies HTTP there (``--http-port``), and ``up``,
``status`` and ``restart`` reach that one worker there (``/healthz``, ``/readyz``, ``/drainz``).

uvicorn takes both sockets through its public ``Server.run(sockets=...)`` (its ``--fd`` takes only
one). The uvicorn arguments are read by uvicorn's own command line (click), so every flag of
:func:`channels_scale.stack.configs.worker_command` means here what it means for the other modes.

- ``X-Forwarded-For``/``-Proto`` are trusted only on the unix socket, where nginx overwrites them;
  on the public port the worker sees the client's own address and ignores the headers.
- The app is loaded before the public socket is bound: a restarted worker joins the port once it
  can serve, not while Django is still importing.
- Draining (``POST /drainz``, ``channels-scale restart --rolling``) first closes this worker's
  public listener (:data:`channels_scale.asgi.DRAIN_HOOKS`): the kernel then sends new connections
  to the other workers only. Connections already queued on that listener and not yet accepted are
  reset by Linux unless ``net.ipv4.tcp_migrate_req=1`` (docs/operations.md).
"""

from __future__ import annotations

import argparse
import inspect
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The listen backlog of the public socket (the unix socket's comes from ``--backlog``).
PUBLIC_BACKLOG = 4096


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) -> ``(host, port)`` (pure)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--listen must be HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def public_socket(host: str, port: int, backlog: int = PUBLIC_BACKLOG) -> socket.socket:
    """A listening TCP socket with ``SO_REUSEPORT``: every worker binds one to the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def unix_socket(path: str, backlog: int) -> socket.socket:
    Path(path).unlink(missing_ok=True)  # a worker that died hard leaves its file behind
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(backlog)
    return sock


def uvicorn_settings(args: Sequence[str]) -> dict[str, Any]:
    """uvicorn's command line ``args`` as keyword arguments of ``uvicorn.Config`` (with ``app``).

    Read by uvicorn's own click command, as ``uvicorn ARGS`` would; only the keywords ``Config``
    takes are kept (the reload options and ``--app-dir`` have no use in a stack worker).
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG
    from uvicorn.main import main as uvicorn_cli

    params = dict(uvicorn_cli.make_context("uvicorn", list(args)).params)
    params["headers"] = [header.split(":", 1) for header in params.get("headers") or ()]
    if params.get("log_config") is None:
        params["log_config"] = LOGGING_CONFIG
    accepted = inspect.signature(uvicorn.Config).parameters
    return {
        key: value
        for key, value in params.items()
        if key in accepted and not key.startswith("reload")
    }


def trust_forwarded_on_unix_socket(app: Any) -> Any:
    """``app`` behind uvicorn's proxy-headers middleware for unix-socket connections only.

    uvicorn's ``--forwarded-allow-ips`` cannot name a unix socket (its peer has no address), and
    ``*`` would let a client on the public port choose the address the app sees.
    """
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    trusted = ProxyHeadersMiddleware(app, trusted_hosts="*")

    async def application(scope: Any, receive: Any, send: Any) -> None:
        server = scope.get("server")
        if scope["type"] != "lifespan" and server is not None and server[1] is None:
            await trusted(scope, receive, send)  # (path, None): the unix socket, from nginx
        else:
            await app(scope, receive, send)

    return application


def run(listen: str, uvicorn_args: Sequence[str]) -> None:
    import uvicorn
    from uvicorn.importer import import_from_string

    from channels_scale.asgi import DRAIN_HOOKS

    host, port = parse_listen(listen)
    settings = uvicorn_settings(uvicorn_args)
    uds = settings.pop("uds")
    if not uds:
        raise SystemExit("channels_scale.stack.reuseport: --uds PATH is required")
    settings.pop("fd", None)
    settings.pop("proxy_headers", None)
    app = import_from_string(settings.pop("app"))
    config = uvicorn.Config(trust_forwarded_on_unix_socket(app), proxy_headers=False, **settings)
    config.load()  # the app is imported before the public port is joined (see the docstring)
    private = unix_socket(uds, config.backlog)
    public = public_socket(host, port)
    public_fd = public.fileno()
    server = uvicorn.Server(config)

    def stop_listening() -> None:
        for listener in server.servers:
            if any(sock.fileno() == public_fd for sock in listener.sockets):
                listener.close()

    DRAIN_HOOKS.append(stop_listening)
    server.run(sockets=[private, public])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m channels_scale.stack.reuseport",
        allow_abbrev=False,
        description="uvicorn on a SO_REUSEPORT public port and its --uds socket (--lb direct)",
    )
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    args, uvicorn_args = parser.parse_known_args(argv)
    run(args.listen, uvicorn_args)


if __name__ == "__main__":
    main(sys.argv[1:])
