"""What a stack is made of: the options of ``channels-scale up`` and the files of a run directory.

Pure data, no I/O: the config renderers and the runner both read these.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import channels_scale
from channels_scale.settings import DEFAULT_LAYER, LAYERS


def _example_dir() -> Path:
    """The bundled example: the wheel's copy inside the package, else a source checkout's."""
    package = Path(channels_scale.__file__).resolve().parent
    packaged = package / "example"  # pyproject.toml ships example/ there in the wheel
    if (packaged / "config" / "asgi.py").is_file():
        return packaged
    return package.parents[1] / "example"  # src/channels_scale -> the checkout's root


#: Where the bundled example project lives (see :func:`_example_dir`).
EXAMPLE_DIR = _example_dir()
#: Whether :data:`EXAMPLE_DIR` is the installed copy (read-only in spirit: its data goes elsewhere).
EXAMPLE_INSTALLED = EXAMPLE_DIR.parent == Path(channels_scale.__file__).resolve().parent
EXAMPLE_APP = "config.asgi:application"
EXAMPLE_SETTINGS = "config.settings"

#: ``--lb``: nginx / haproxy proxy HTTP (websockets as upgraded tunnels); nginx-stream /
#: haproxy-tcp proxy TCP (L4); direct: the workers share the public port (SO_REUSEPORT) and nginx
#: serves HTTP and static files on ``http_port`` (docs/operations.md, stack/lbconfigs.py).
LOAD_BALANCERS = ("nginx", "nginx-stream", "haproxy", "haproxy-tcp", "direct")
#: ``--lb`` when not given: nginx in front, as in the recipe; ``direct`` costs less CPU per delivery
#: but fell behind under CPU contention (docs/operations.md, "Which mode is the default").
DEFAULT_LB = "nginx"
SERVERS = ("uvicorn", "daphne")
CONSUMERS = ("ours", "channels")

#: Unix socket paths longer than this do not fit in ``sockaddr_un`` on Linux.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class StackOptions:
    """Everything ``channels-scale up`` needs to run a stack.

    Attributes:
        app: the ASGI application, ``module:attribute``.
        settings: ``DJANGO_SETTINGS_MODULE`` for the workers (None: leave the environment's).
        pythonpath: directories put first on the workers' ``PYTHONPATH``.
        workers: number of ASGI worker processes, each on its own unix socket.
        host, port: where the load balancer listens.
        redis_url: an existing Redis; None starts a private redis-server in the run directory.
        lb: one of :data:`LOAD_BALANCERS`.
        http_port: with ``--lb direct``, where nginx serves HTTP and static files (None: a free
            port, chosen by ``Stack.start`` and printed by ``up``).
        server: ``uvicorn`` or ``daphne``.
        layer: ``channels_scale``, ``channels_redis`` or ``channels_redis_pubsub``.
        consumer: ``ours`` or ``channels``: which consumer family the example's endpoints use.
        run_dir: generated configs, sockets, logs and the private Redis' files.
        max_message_bytes: largest websocket frame a worker accepts; over it: close 1009.
        ws_ping_interval, ws_ping_timeout: server pings that find dead peers (seconds).
        redis_port: the private Redis' port (0: pick a free one).
        collectstatic: with nginx, run Django's ``collectstatic`` into ``STATIC_ROOT`` first.
        redis_password: the private Redis' password (None: one generated per run directory).
        insecure_secret_key: let an app whose ``SECRET_KEY`` is the example's public default run
            (local development only; without it ``up`` refuses).
        keep_channel_layers: keep the project's ``CHANNEL_LAYERS`` (default: the workers' layer
            runs on the stack's Redis, see :mod:`channels_scale.stack.overlay`).
        ready_path: ``up`` is ready once ``GET ready_path`` through the LB answers below 500.
        ready_ws_path: also a websocket handshake on this path must complete (None: no check).
        redis_cluster: start a private Redis Cluster of this many masters instead of one Redis
            (0: no; see :mod:`channels_scale.stack.topology`).
        max_connections: websockets the stack is sized for (nginx workers, fd limits; ``up``
            refuses what the open-files limit cannot hold), see :mod:`channels_scale.stack.limits`
            (None: sized from the limit alone).
    """

    app: str = EXAMPLE_APP
    settings: str | None = EXAMPLE_SETTINGS
    pythonpath: tuple[Path, ...] = (EXAMPLE_DIR,)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = None
    lb: str = DEFAULT_LB
    http_port: int | None = None
    server: str = "uvicorn"
    layer: str = DEFAULT_LAYER
    consumer: str = "ours"
    run_dir: Path = Path(".run/channels-scale")
    max_message_bytes: int = 65536
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    redis_port: int = 0
    python: str = sys.executable
    collectstatic: bool = True
    redis_password: str | None = None
    insecure_secret_key: bool = False
    # The app's own checks (stack/overlay.py, stack/readiness.py).
    keep_channel_layers: bool = False
    ready_path: str = "/"
    ready_ws_path: str | None = None
    redis_cluster: int = 0
    max_connections: int | None = None

    def problems(self) -> list[str]:
        """What is wrong with these options, one line each with the fix (empty: nothing)."""
        found = []
        if ":" not in self.app:
            found.append(
                f"--app {self.app!r} must be MODULE:ATTRIBUTE, e.g. myproject.asgi:application"
            )
        if self.workers < 1:
            found.append(f"--workers must be at least 1, not {self.workers}")
        if self.max_connections is not None and self.max_connections < 1:
            found.append(f"--max-connections must be at least 1, not {self.max_connections}")
        if not 0 < self.port < 65536:
            found.append(f"--port must be between 1 and 65535, not {self.port}")
        found += self._lb_problems()
        if self.server not in SERVERS:
            found.append(f"--server must be one of {', '.join(SERVERS)}, not {self.server!r}")
        if self.layer not in LAYERS:
            found.append(f"--layer must be one of {', '.join(LAYERS)}, not {self.layer!r}")
        if self.consumer not in CONSUMERS:
            found.append(f"--consumer must be one of {', '.join(CONSUMERS)}, not {self.consumer!r}")
        if not self.ready_path.startswith("/"):
            found.append(f"--ready-path must start with '/', not {self.ready_path!r}")
        if self.ready_ws_path is not None and not self.ready_ws_path.startswith("/"):
            found.append(f"--ready-ws-path must start with '/', not {self.ready_ws_path!r}")
        if self.max_message_bytes < 1:
            found.append("--max-message-bytes must be positive")
        if self.redis_password is not None and self.redis_url is not None:
            found.append(
                "--redis-password is for the private Redis: put the password in the --redis URL "
                "instead (redis://:PASSWORD@HOST:PORT/0)"
            )
        if self.redis_cluster:
            if self.redis_url is not None:
                found.append("--redis-cluster starts a private cluster: leave out --redis")
            if self.redis_cluster < 3:
                found.append(
                    f"--redis-cluster needs at least 3 masters (a majority elects a failover), "
                    f"not {self.redis_cluster}"
                )
            if self.layer != "channels_scale":
                found.append(f"--redis-cluster needs --layer channels_scale, not {self.layer}")
        if self.redis_password == "":
            found.append("--redis-password must not be empty")
        return found

    @property
    def lb_http_port(self) -> int:
        """Where nginx serves HTTP in ``direct`` mode (the public port in the other modes)."""
        if self.lb != "direct":
            return self.port
        if self.http_port is None:
            raise ValueError("no http_port yet: Stack.start chooses a free one")
        return self.http_port

    def _lb_problems(self) -> list[str]:
        if self.lb not in LOAD_BALANCERS:
            return [f"--lb must be one of {', '.join(LOAD_BALANCERS)}, not {self.lb!r}"]
        if self.http_port is not None and self.lb != "direct":
            return [f"--http-port is for --lb direct (with --lb {self.lb} all goes to --port)"]
        if self.lb != "direct":
            return []
        if self.server != "uvicorn":
            return [
                f"--lb direct shares the port through uvicorn: --server {self.server} is not "
                "supported with it; use --lb nginx"
            ]
        if self.http_port is not None and (
            not 0 < self.http_port < 65536 or self.http_port == self.port
        ):
            return [f"--http-port must be a port other than --port ({self.port}), 1-65535"]
        return []


@dataclass(frozen=True)
class RunLayout:
    """The files of one run directory (all absolute)."""

    root: Path

    @classmethod
    def of(cls, run_dir: Path) -> RunLayout:
        return cls(run_dir.expanduser().resolve())

    @property
    def sockets(self) -> Path:
        return self.root / "sockets"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def nginx_dir(self) -> Path:
        return self.root / "nginx"

    @property
    def supervisord_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def nginx_conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def haproxy_cfg(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def haproxy_socket(self) -> Path:
        return self.root / "haproxy.sock"

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def secret_key_file(self) -> Path:
        """A ``SECRET_KEY`` generated for this run directory (mode 0600)."""
        return self.root / "secret_key"

    @property
    def redis_password_file(self) -> Path:
        """The private Redis' password generated for this run directory (mode 0600)."""
        return self.redis_dir / "password"

    @property
    def redis_conf(self) -> Path:
        return self.redis_dir / "redis.conf"

    def worker_socket(self, worker: int) -> Path:
        return self.sockets / f"worker-{worker}.sock"

    def worker_socket_template(self) -> str:
        """The worker socket path with supervisor's ``%(process_num)d`` in place of the number."""
        return str(self.sockets / "worker-%(process_num)d.sock")

    def longest_socket_path(self, workers: int) -> int:
        return max(len(str(self.worker_socket(workers - 1))), len(str(self.supervisor_socket)))
