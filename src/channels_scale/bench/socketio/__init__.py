"""The ``socketio`` stack of the bench: Socket.IO with ``@socket.io/redis-adapter`` (Node).

The peer users pick instead of Channels, run the way its documentation shows and started like the
Django stacks: a private ``redis-server``, ``--workers`` Node processes (``server.js`` beside this
file, each on its own unix socket) and nginx in front with the very config ``channels-scale up``
renders (:func:`channels_scale.stack.configs.render_nginx`: ``least_conn`` over the worker
sockets), so the load balancer's share is the same as theirs. Clients use the websocket transport
only (the ``socketio`` wire, :mod:`channels_scale.bench.wire`), so no sticky sessions are needed:
a connection's every packet travels its one proxied websocket.

Adapter and client, pinned in ``package-lock.json``: ``@socket.io/redis-adapter`` (the standard
adapter: pub/sub, one ``PUBLISH`` per broadcast; not the sharded or streams variants) with
``redis`` (node-redis 4), the client its documentation's first example uses and the major its own
tests run against. The packages are installed by ``./scripts/install --socketio`` (``npm ci``
into ``node_modules`` beside ``server.js``, not committed), or wherever
``CHANNELS_SCALE_SOCKETIO_MODULES`` points (a ``node_modules`` directory, given to Node as
``NODE_PATH``).

Costs are metered like the other stacks': the Node processes as ``worker``, Redis as ``redis``,
nginx as ``lb`` (:func:`channels_scale.bench.costs.role`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from channels_scale.exceptions import ConfigError, StackError
from channels_scale.net import free_port, wait_until
from channels_scale.stack.processes import stop_children

SERVER_DIR = Path(__file__).resolve().parent
SERVER_JS = SERVER_DIR / "server.js"
MODULES_ENV = "CHANNELS_SCALE_SOCKETIO_MODULES"
PACKAGES = ("socket.io", "@socket.io/redis-adapter", "redis")
INSTALL = "./scripts/install --socketio"
DESCRIPTION = "Socket.IO + @socket.io/redis-adapter (Node), nginx"


def node_modules() -> Path:
    """Where the npm packages are: ``$CHANNELS_SCALE_SOCKETIO_MODULES`` or beside ``server.js``."""
    return Path(os.environ.get(MODULES_ENV) or SERVER_DIR / "node_modules")


def missing_install() -> str | None:
    """One line saying what to run when Node or the npm packages are missing (None: all there)."""
    from channels_scale.stack.preflight import find_binary

    if find_binary("node") is None:
        return (
            f"the socketio stack needs Node.js 18+ and its npm packages: run {INSTALL} "
            "(or leave socketio out of --stacks)"
        )
    modules = node_modules()
    missing = [p for p in PACKAGES if not (modules / p / "package.json").is_file()]
    if missing:
        return (
            f"the socketio stack's npm packages are not installed ({', '.join(missing)} missing "
            f"in {modules}): run {INSTALL} (or leave socketio out of --stacks)"
        )
    return None


@dataclass(frozen=True)
class Running:
    """A started socketio stack: nginx's ``ws://`` URL, its Redis, each Node process's socket."""

    ws_url: str
    redis_url: str
    pids: list[int]
    worker_sockets: list[Path]


class _Processes:
    """The stack's processes, started in order and stopped in reverse (by pid, never by name)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> int:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.started.append((proc, log))
        return proc.pid

    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.started]

    def exited(self) -> str | None:
        for proc, log in self.started:
            if proc.poll() is not None:
                return f"{Path(log.name).stem} exited with {proc.returncode}; see {log.name}"
        return None

    def stop(self) -> None:
        stop_children(proc for proc, _ in reversed(self.started))
        for _, log in self.started:
            log.close()


def _redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def socketio_target(
    workers: int, log_dir: Path, ping_interval_ms: int = 25_000, ping_timeout_ms: int = 60_000
) -> Iterator[Running]:
    """Start Redis, ``workers`` Node processes and nginx; yield them as :class:`Running`.

    The heartbeat: Socket.IO's default interval, and a timeout three times its default, so a load
    generator held up for a while under saturation is not disconnected (it answers every ping).

    Configs and sockets live in a fresh temporary run directory (short, so unix socket paths fit),
    removed on exit after every process is stopped; the processes' output goes to
    ``log_dir/socketio-*.log``. Raises :class:`ConfigError` when Node or the packages
    are missing, :class:`StackError` when a process does not come up.
    """
    from channels_scale.bench.clientproc import raise_fd_limit
    from channels_scale.stack.configs import render_nginx
    from channels_scale.stack.health import http_status, worker_health
    from channels_scale.stack.options import RunLayout, StackOptions
    from channels_scale.stack.preflight import (
        find_binary,
        private_redis_url,
        redis_conf,
        write_private,
    )

    problem = missing_install()
    if problem:
        raise ConfigError(problem)
    node, redis_server, nginx = (find_binary(n) for n in ("node", "redis-server", "nginx"))
    if redis_server is None or nginx is None:
        raise ConfigError("redis-server and nginx are needed: run ./scripts/install")
    assert node is not None  # missing_install() checked it
    open_files = raise_fd_limit()  # the servers inherit it: every connection holds descriptors
    run_dir = Path(tempfile.mkdtemp(prefix="csb-socketio-"))
    layout = RunLayout.of(run_dir)
    options = StackOptions(workers=workers, host="127.0.0.1", port=free_port(), run_dir=run_dir)
    for path in (layout.sockets, layout.logs, layout.redis_dir, layout.nginx_dir / "tmp"):
        path.mkdir(parents=True, exist_ok=True)
    procs = _Processes(log_dir)
    try:
        password = secrets.token_urlsafe(24)
        redis_port = free_port()
        redis_url = private_redis_url(redis_port, password)
        write_private(layout.redis_conf, redis_conf(password))
        procs.start("socketio-redis", [
            redis_server, str(layout.redis_conf), "--port", str(redis_port),
            "--bind", "127.0.0.1", "--dir", str(layout.redis_dir), "--save", "",
            "--appendonly", "no", "--daemonize", "no",
        ])  # fmt: skip
        if not wait_until(lambda: _redis_answers(redis_url) or procs.exited() is not None, 20):
            raise StackError(f"the socketio stack's Redis did not answer on port {redis_port}")
        env = {
            **os.environ,
            "CSB_REDIS_URL": redis_url,
            "CSB_PING_INTERVAL_MS": str(ping_interval_ms),
            "CSB_PING_TIMEOUT_MS": str(ping_timeout_ms),
            "NODE_PATH": str(node_modules()),
        }
        for i in range(workers):
            env["CSB_LISTEN"] = str(layout.worker_socket(i))
            procs.start(f"socketio-{i}", [node, str(SERVER_JS)], env=dict(env))
        layout.nginx_conf.write_text(
            render_nginx(options, layout, None, None, open_files, run_as_root=os.geteuid() == 0)
        )
        procs.start("socketio-nginx", [
            nginx, "-p", str(layout.nginx_dir), "-c", str(layout.nginx_conf), "-e", "stderr",
        ])  # fmt: skip
        sockets = [layout.worker_socket(i) for i in range(workers)]

        def up() -> bool:
            # Every Node process answers /healthz on its socket, and nginx passes it through.
            return procs.exited() is not None or (
                all(worker_health(path) is not None for path in sockets)
                and http_status("127.0.0.1", options.port) == 200
            )

        if not wait_until(up, 30):
            raise StackError("the socketio stack did not listen within 30 s; see its logs")
        exited = procs.exited()
        if exited is not None:
            raise StackError(f"the socketio stack: {exited}")
        yield Running(f"ws://127.0.0.1:{options.port}", redis_url, procs.pids(), sockets)
    finally:
        procs.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
