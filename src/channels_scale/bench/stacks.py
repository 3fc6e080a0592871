"""The stacks the bench compares, started and stopped one at a time on loopback.

==========  ==================================================================================
name        what it is
==========  ==================================================================================
ours        ``channels-scale up`` on the example: ``channels_scale.layer`` + our consumer base
recipe      ``channels-scale up`` on the example: Channels' ``AsyncWebsocketConsumer`` +
            ``channels_redis.core.RedisChannelLayer`` (with the redis-py 8 workarounds)
pubsub      the recipe's consumer on ``channels_redis.pubsub.RedisPubSubChannelLayer``
ceiling     :mod:`channels_scale.bench.ceiling`: a bare ``websockets`` server, one process
socketio    :mod:`channels_scale.bench.socketio`: Socket.IO + its Redis adapter (Node), N processes
            behind the same nginx, on a private Redis
url         any running deployment (``--url``): ``/ws/broadcast/<room>/`` or the endpoint of
            ``--path``/``--frame`` (:mod:`channels_scale.bench.endpoint`)
==========  ==================================================================================

The three Django stacks run with the same worker count, a private Redis and the load balancer of
``--lb`` (``up``'s default when not given), each in its own temporary run directory, torn down fully
before the next one starts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from channels_scale.bench.costs import parent_pid, role
from channels_scale.bench.endpoint import Endpoint, handshake_hint
from channels_scale.bench.socketio import DESCRIPTION as SOCKETIO_DESCRIPTION
from channels_scale.bench.socketio import missing_install, socketio_target
from channels_scale.bench.wire import DEFAULT_WIRE
from channels_scale.exceptions import ConfigError, StackError
from channels_scale.net import free_port, wait_until
from channels_scale.stack.processes import stop_children

STACKS = ("ours", "recipe", "pubsub", "ceiling", "socketio")

DJANGO_STACKS: dict[str, tuple[str, str]] = {
    "ours": ("channels_scale", "ours"),
    "recipe": ("channels_redis", "channels"),
    "pubsub": ("channels_redis_pubsub", "channels"),
}
"""Stack name -> (channel layer, consumer family) passed to ``channels-scale up``."""

DESCRIPTIONS = {
    "ours": "channels_scale layer + our consumer",
    "recipe": "AsyncWebsocketConsumer + channels_redis core layer",
    "pubsub": "AsyncWebsocketConsumer + channels_redis pub/sub layer",
    "ceiling": "bare websockets broadcast server (1 process, no Django, no Redis)",
    "socketio": SOCKETIO_DESCRIPTION,
    "url": "a running deployment (--url)",
}


@dataclass
class Target:
    """A running stack the load generator can hit.

    ``pids`` returns the server-side processes to meter (empty when unknown, as for ``--url``);
    ``processes`` is how many server processes serve websockets (the ceiling: always 1);
    ``wire`` what clients speak around the bench frame (:mod:`channels_scale.bench.wire`).
    ``lb``: the ``--lb`` mode of a Django stack (None: no load balancer of ours).
    """

    name: str
    ws_url: str
    description: str
    processes: int | None
    redis_url: str | None
    pids: Callable[[], list[int]]
    wire: str = DEFAULT_WIRE
    #: one plain URL per Redis node (shard or cluster master), each metered on its own
    redis_nodes: tuple[str, ...] = ()
    lb: str | None = None


def parse_stacks(text: str) -> list[str]:
    """``ours,recipe`` -> ``["ours", "recipe"]``; raises ValueError naming an unknown stack."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("no stack named; choose from " + ", ".join(STACKS))
    unknown = [n for n in names if n not in STACKS]
    if unknown:
        raise ValueError(f"unknown stack {unknown[0]!r}; choose from {', '.join(STACKS)}")
    return list(dict.fromkeys(names))


def check_stacks(names: list[str]) -> None:
    """Raise :class:`ConfigError` (one line: what to install) when a stack cannot start here."""
    if "socketio" in names and (problem := missing_install()):
        raise ConfigError(problem)


def check_url(url: str, timeout: float = 3.0) -> str:
    """Validate a ``--url`` target: ``ws://HOST:PORT`` on loopback, answering TCP connects.

    Returns the URL without a trailing slash. Raises :class:`ConfigError` with one line that says
    what is wrong: the bench only loads loopback addresses (127.0.0.0/8, ::1).
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ConfigError(f"--url must look like ws://127.0.0.1:8000, not {url!r}")
    if parts.path not in ("", "/"):
        raise ConfigError(
            f"--url takes no path (give it with --path '/ws/chat/{{room}}/'): {url!r}"
        )
    try:
        port = parts.port or 80
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot resolve --url {url!r}: {exc}") from None
    addresses = {info[4][0] for info in infos}
    if not all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses):
        raise ConfigError(f"--url {url!r} is not on loopback: the bench only loads 127.0.0.0/8")
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot reach --url {url!r}: {exc.strerror or exc}") from None
    return f"ws://{parts.netloc}"


def check_handshake(base_url: str, endpoint: Endpoint, room: str, timeout: float = 5.0) -> None:
    """Open one websocket to ``endpoint`` (room ``room``) as the clients will, then close it.

    Raises :class:`ConfigError` with one line when the server refuses the handshake (its status
    code and the likely cause: Origin check or authentication for 403, the path for 404) or closes
    the connection within half a second of accepting it (its close code: e.g. 4401 for a consumer
    that closes anonymous users).
    """
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
    from websockets.sync.client import connect

    url = endpoint.url(base_url, room)
    path = endpoint.path.replace("{room}", room)
    try:
        ws = connect(
            url, additional_headers=list(endpoint.headers), open_timeout=timeout,
            compression=None, proxy=None, user_agent_header=None,
        )  # fmt: skip
        # Open and quiet (TimeoutError) is what a room endpoint does before anyone publishes.
        with ws, contextlib.suppress(TimeoutError):
            ws.recv(timeout=0.5)
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise ConfigError(
            f"{url} refused the websocket handshake with HTTP {status} "
            f"{exc.response.reason_phrase}: likely {handshake_hint(status, path)}"
        ) from None
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else 1006
        reason = f" ({exc.rcvd.reason})" if exc.rcvd and exc.rcvd.reason else ""
        raise ConfigError(
            f"{url} accepted the websocket, then closed it with code {code}{reason}: "
            "authentication (pass --header Cookie:sessionid=...) or a refused room or frame"
        ) from None
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise ConfigError(f"websocket handshake to {url} failed: {exc}") from None


@contextlib.contextmanager
def url_target(url: str) -> Iterator[Target]:
    """A ``--url`` deployment: nothing to start or stop, no server processes to meter."""
    yield Target("url", check_url(url), f"{DESCRIPTIONS['url']}: {url}", None, None, list)


@contextlib.contextmanager
def ceiling_target(log_dir: Path) -> Iterator[Target]:
    """Start :mod:`channels_scale.bench.ceiling` on a free port; stop it on exit."""
    port = free_port()
    log = (log_dir / "ceiling.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "channels_scale.bench.ceiling", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not wait_until(lambda: _answers("127.0.0.1", port) or proc.poll() is not None, 20):
            raise StackError(f"the ceiling server did not answer on port {port}")
        if proc.poll() is not None:
            raise StackError(f"the ceiling server exited with {proc.returncode}; see {log.name}")
        yield Target(
            "ceiling",
            f"ws://127.0.0.1:{port}",
            DESCRIPTIONS["ceiling"],
            1,
            None,
            lambda: [proc.pid],
        )
    finally:
        stop_children([proc])
        log.close()


@contextlib.contextmanager
def django_target(
    name: str,
    workers: int,
    redis_topology: str = "single",
    lb: str | None = None,
    max_connections: int | None = None,
) -> Iterator[Target]:
    """Start ``channels-scale up`` for ``name`` (ours, recipe, pubsub); stop it on exit.

    ``lb``: the load balancer mode (``up --lb``; None: its default). The bench connects to the
    stack's public port, whatever serves it (the workers themselves with ``direct``).

    The run directory is a fresh temporary directory (short, so unix socket paths fit) removed
    afterwards. ``redis_topology`` (:func:`~channels_scale.stack.topology.parse_topology`):
    ``single`` is the stack's private Redis; ``shards:K`` K private redis-servers the bench starts
    (given as ``--redis``, metered with the stack); ``cluster:N`` the stack's private N-master
    cluster (``--redis-cluster N``). Raises :class:`StackError` when the stack does not come up.
    """
    from channels_scale.stack import Stack, StackOptions
    from channels_scale.stack.topology import cluster_master_urls, parse_topology, redis_servers

    layer, consumer = DJANGO_STACKS[name]
    try:
        kind, count = parse_topology(redis_topology)
    except ValueError as exc:
        raise ConfigError(f"--redis-topology: {exc}") from None
    run_dir = Path(tempfile.mkdtemp(prefix=f"csb-{name}-"))
    try:
        with contextlib.ExitStack() as resources:
            shards = []
            if kind == "shards":
                shards = resources.enter_context(redis_servers(count, run_dir / "shards"))
            options = StackOptions(
                workers=workers,
                host="127.0.0.1",
                port=free_port(),
                run_dir=run_dir,
                layer=layer,
                consumer=consumer,
                lb=lb or StackOptions.lb,
                server="uvicorn",
                redis_url=",".join(url for url, _ in shards) or None,
                redis_cluster=count if kind == "cluster" else 0,
                max_connections=max_connections,
            )
            stack = resources.enter_context(Stack(options))
            if kind == "cluster":
                nodes = tuple(cluster_master_urls(stack.redis_url))
            else:
                nodes = tuple(url for url, _ in shards) or (stack.redis_url,)

            def pids() -> list[int]:
                # supervisord too: it pipes the workers' output, which costs CPU under load
                found = stack.server_pids()
                return sorted(
                    {
                        *found,
                        *(p for p in map(parent_pid, found) if p and role(p) == "supervisor"),
                        *(pid for _, pid in shards),
                    }
                )

            yield Target(
                name, stack.ws_url, f"{DESCRIPTIONS[name]}, --lb {options.lb}", workers,
                stack.redis_url or None, pids, redis_nodes=nodes, lb=options.lb,
            )  # fmt: skip
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@contextlib.contextmanager
def socketio_stack(workers: int, log_dir: Path) -> Iterator[Target]:
    """Start :mod:`channels_scale.bench.socketio` (``workers`` Node processes); stop it on exit."""
    with socketio_target(workers, log_dir) as running:
        pids = running.pids
        yield Target(
            "socketio",
            running.ws_url,
            SOCKETIO_DESCRIPTION,
            workers,
            running.redis_url,
            lambda: pids,
            wire="socketio",
        )


def open_target(
    name: str,
    *,
    workers: int,
    log_dir: Path,
    url: str | None = None,
    redis_topology: str = "single",
    lb: str | None = None,
    max_connections: int | None = None,
) -> contextlib.AbstractContextManager[Target]:
    """The context manager that starts (and on exit stops) the stack called ``name``.

    ``max_connections``: size a Django stack for that many websockets (``up --max-connections``).
    """
    if redis_topology != "single" and name != "ours":
        raise ConfigError(f"--redis-topology {redis_topology} is for the ours stack, not {name}")
    if name == "url":
        return url_target(url or "")
    if name == "ceiling":
        return ceiling_target(log_dir)
    if name in DJANGO_STACKS:
        return django_target(name, workers, redis_topology, lb, max_connections)
    if name == "socketio":
        return socketio_stack(workers, log_dir)
    raise ConfigError(f"unknown stack {name!r}; choose from {', '.join(STACKS)}")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
