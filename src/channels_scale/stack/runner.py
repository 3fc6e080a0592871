"""Bring a stack up under supervisor, check it, and take it down leaving no process behind."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from channels_scale.exceptions import ConfigError, StackError
from channels_scale.net import free_port, port_in_use, timeout_factor
from channels_scale.stack import overlay, readiness, restart
from channels_scale.stack.configs import (
    Binaries,
    render_haproxy,
    render_nginx,
    render_supervisord,
    worker_environment,
)
from channels_scale.stack.health import haproxy_servers_up, http_status, worker_health
from channels_scale.stack.options import MAX_SOCKET_PATH, RunLayout, StackOptions
from channels_scale.stack.processes import children_of, kill_all, processes_mentioning

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

_PROBE = """
import json, os, sys
from channels_scale.stack.app import load_application
load_application(os.environ["CHANNELS_SCALE_APP"])
static_url = static_root = None
try:
    from django.conf import settings
    if settings.configured:
        static_url = settings.STATIC_URL
        static_root = str(settings.STATIC_ROOT) if settings.STATIC_ROOT else None
except Exception:
    pass
if static_root and os.environ.get("CHANNELS_SCALE_COLLECTSTATIC") == "1":
    from django.core.management import call_command
    call_command("collectstatic", interactive=False, verbosity=0)
from channels_scale.stack.overlay import probe_facts
print(json.dumps({"static_url": static_url, "static_root": static_root, **probe_facts()}))
"""


def find_binary(name: str) -> str | None:
    """Where program ``name`` is, or None.

    ``CHANNELS_SCALE_<NAME>`` (e.g. ``CHANNELS_SCALE_NGINX=/opt/nginx/sbin/nginx``) wins when set;
    then beside this Python (a venv's bin), PATH, and /usr/sbin (nginx, haproxy).
    """
    override = os.environ.get("CHANNELS_SCALE_" + name.upper().replace("-", "_"))
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def open_files_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 65536
    return int(soft)


def supervisor_proxy(socket_path: Path) -> Any:
    """An XML-RPC proxy to a supervisord listening on ``socket_path``."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{socket_path}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisor_processes(socket_path: Path) -> list[dict[str, Any]] | None:
    """supervisord's view of its processes, or None when it does not answer."""
    try:
        info = supervisor_proxy(socket_path).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return None
    return list(info)


class Stack:
    """Redis + N ASGI workers + a load balancer under supervisor, from :class:`StackOptions`.

    Use as a context manager (``with Stack(options) as stack:``) or call :meth:`start` and
    :meth:`stop`. :meth:`start` returns once every worker answers ``/healthz`` through its socket
    and the load balancer answers; it raises :class:`ConfigError` for bad input (nothing is left
    running) and :class:`StackError` when a part does not come up (everything is stopped).
    """

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.layout = RunLayout.of(options.run_dir)
        self.redis_url = options.redis_url or ""
        self._redis_port: int | None = None
        self._supervisord: subprocess.Popen[bytes] | None = None
        self._static: tuple[str | None, Path | None] = (None, None)
        #: which channel layer and Redis the workers use (stack/overlay.py), printed by `up`
        self.layer_summary = ""

    # -- public ---------------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://{self.options.host}:{self.options.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.options.host}:{self.options.port}"

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        binaries = self._preflight()
        self._write_configs(binaries)
        self._check_lb_config(binaries)
        self._launch(binaries)
        try:
            self._wait_healthy()
            self.layer_summary = readiness.check(self)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop supervisord (and so every process); kill anything of this run dir still alive."""
        proc = self._supervisord
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S * timeout_factor())
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._supervisord = None
        kill_all(processes_mentioning(str(self.layout.root)))

    def wait(self) -> int:
        """Block until supervisord exits; its exit code."""
        if self._supervisord is None:
            return 0
        return self._supervisord.wait()

    def running(self) -> bool:
        return self._supervisord is not None and self._supervisord.poll() is None

    def server_pids(self) -> list[int]:
        """Pids of every server-side process: workers, the private Redis, the LB and its workers."""
        info = supervisor_processes(self.layout.supervisor_socket) or []
        pids = [int(p["pid"]) for p in info if p.get("pid")]
        return sorted({*pids, *(c for pid in pids for c in children_of(pid))})

    def processes(self) -> list[dict[str, Any]]:
        return supervisor_processes(self.layout.supervisor_socket) or []

    # -- steps ----------------------------------------------------------------------------------

    def _preflight(self) -> Binaries:
        options = self.options
        problems = options.problems()
        if problems:
            raise ConfigError(problems[0])
        supervisord = find_binary("supervisord")
        if supervisord is None:
            raise ConfigError("supervisord is not installed: run ./scripts/install")
        redis_server = find_binary("redis-server") if options.redis_url is None else None
        if options.redis_url is None and redis_server is None:
            raise ConfigError(
                "redis-server is not installed: run ./scripts/install "
                "(or apt-get install redis-server), or pass --redis URL"
            )
        nginx = find_binary("nginx") if options.lb == "nginx" else None
        haproxy = find_binary("haproxy") if options.lb == "haproxy" else None
        if options.lb == "nginx" and nginx is None:
            raise ConfigError(
                "nginx is not installed: run ./scripts/install (or apt-get install nginx)"
            )
        if options.lb == "haproxy" and haproxy is None:
            raise ConfigError(
                "haproxy is not installed: run ./scripts/install (or apt-get install haproxy)"
            )
        self._prepare_run_dir()
        if port_in_use(options.host, options.port):
            raise ConfigError(
                f"port {options.port} on {options.host} is in use: choose another with --port"
            )
        if options.redis_url is None:
            self._redis_port = options.redis_port or free_port()
            self.redis_url = f"redis://127.0.0.1:{self._redis_port}/0"
        else:
            self._check_redis(options.redis_url)
        self._probe_app()
        return Binaries(supervisord, redis_server, nginx, haproxy)

    def _prepare_run_dir(self) -> None:
        layout = self.layout
        try:
            for path in (layout.root, layout.sockets, layout.logs, layout.redis_dir,
                         layout.nginx_dir / "tmp"):  # fmt: skip
                path.mkdir(parents=True, exist_ok=True)
            probe = layout.root / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"run directory {layout.root} is not writable ({exc.strerror}): "
                "choose another with --run-dir"
            ) from None
        if layout.longest_socket_path(self.options.workers) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"run directory {layout.root} is too deep for unix socket paths "
                f"(max {MAX_SOCKET_PATH} bytes): choose a shorter --run-dir"
            )
        if supervisor_processes(layout.supervisor_socket) is not None:
            raise ConfigError(
                f"a stack is already running in {layout.root}: stop it or choose another --run-dir"
            )

    @staticmethod
    def _check_redis(url: str) -> None:
        import redis

        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
            client.ping()
            client.close()
        except (redis.RedisError, ValueError, OSError) as exc:
            raise ConfigError(
                f"Redis at {url} does not answer ({exc}): start it, fix --redis, "
                "or leave --redis out to run a private one"
            ) from None

    def _probe_app(self) -> None:
        env = {**os.environ, **worker_environment(self.options, self.redis_url, False)}
        if self.options.collectstatic and self.options.lb == "nginx":
            # nginx serves STATIC_ROOT: a stale copy would serve old JS next to new code.
            env["CHANNELS_SCALE_COLLECTSTATIC"] = "1"
        try:
            done = subprocess.run(
                [self.options.python, "-c", _PROBE],
                env=env,
                capture_output=True,
                timeout=60 * timeout_factor(),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(f"importing --app {self.options.app} took over 60 s") from None
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            raise ConfigError(
                f"cannot load --app {self.options.app}: {lines[-1] if lines else 'no output'} "
                "(check --app, --settings and that its directory is on PYTHONPATH)"
            )
        found = json.loads(done.stdout.decode().strip().splitlines()[-1])
        root = Path(found["static_root"]) if found.get("static_root") else None
        self._static = (found.get("static_url"), root if root and root.is_dir() else None)
        restart.write_control_token(self.layout)
        self.options, self.layer_summary = overlay.apply(
            self.options, self.layout, found, self.redis_url
        )

    def _write_configs(self, binaries: Binaries) -> None:
        options, layout = self.options, self.layout
        open_files = open_files_limit()
        static_url, static_root = self._static
        nginx_serves_static = options.lb == "nginx" and static_root is not None
        if static_url and static_url.startswith("http"):
            nginx_serves_static = False
        layout.supervisord_conf.write_text(
            render_supervisord(
                options, layout, binaries, self.redis_url, self._redis_port,
                serve_static=not nginx_serves_static, open_files=open_files,
            )
        )  # fmt: skip
        if options.lb == "nginx":
            layout.nginx_conf.write_text(
                render_nginx(
                    options, layout,
                    static_url if nginx_serves_static else None,
                    static_root if nginx_serves_static else None,
                    open_files, run_as_root=os.geteuid() == 0,
                )
            )  # fmt: skip
        else:
            layout.haproxy_cfg.write_text(render_haproxy(options, layout, open_files))
        layout.state_file.write_text(
            json.dumps(
                {
                    "options": {k: str(v) for k, v in asdict(options).items()},
                    "workers": options.workers,
                    "url": self.http_url,
                    "redis_url": self.redis_url,
                    "sockets": [str(layout.worker_socket(i)) for i in range(options.workers)],
                },
                indent=2,
            )
        )

    def _check_lb_config(self, binaries: Binaries) -> None:
        layout = self.layout
        if self.options.lb == "nginx" and binaries.nginx:
            cmd = [binaries.nginx, "-t", "-q", "-p", str(layout.nginx_dir), "-c",
                   str(layout.nginx_conf), "-e", "stderr"]  # fmt: skip
        elif binaries.haproxy:
            cmd = [binaries.haproxy, "-c", "-q", "-f", str(layout.haproxy_cfg)]
        else:
            return
        done = subprocess.run(cmd, capture_output=True, check=False, timeout=30)
        if done.returncode != 0:
            raise StackError(
                f"generated {self.options.lb} config is invalid: "
                + done.stderr.decode(errors="replace").strip()
            )

    def _launch(self, binaries: Binaries) -> None:
        log = (self.layout.logs / "supervisord.out").open("ab")
        # A session of its own: Ctrl-C reaches `channels-scale up`, which then stops supervisord
        # in order, instead of every child receiving SIGINT at once.
        self._supervisord = subprocess.Popen(
            [binaries.supervisord, "-c", str(self.layout.supervisord_conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S * timeout_factor()
        sockets = [self.layout.worker_socket(i) for i in range(self.options.workers)]
        while True:
            if not self.running():
                raise StackError(f"supervisord exited: {self._tail('supervisord.log')}")
            workers_up = all(worker_health(path, timeout=1) is not None for path in sockets)
            if (
                workers_up
                and http_status(self.options.host, self.options.port, timeout=1) == 200
                and self._lb_sees_every_worker()
            ):
                return
            if time.monotonic() > deadline:
                missing = [p.name for p in sockets if worker_health(p, timeout=1) is None]
                detail = (
                    f"workers not answering: {', '.join(missing)}; {self._tail('worker-0.log')}"
                    if missing
                    else "the load balancer does not answer; "
                    + self._tail(self.options.lb + ".log")
                )
                raise StackError(f"stack did not come up within {START_TIMEOUT_S:.0f} s: {detail}")
            time.sleep(0.1)

    def _lb_sees_every_worker(self) -> bool:
        """HAProxy marks a server down until a health check passes: wait for all to be up.

        nginx has no such state (a refused socket is retried on the next server).
        """
        if self.options.lb != "haproxy":
            return True
        servers = haproxy_servers_up(self.layout.haproxy_socket)
        return len(servers) == self.options.workers and all(servers.values())

    def _tail(self, log_name: str, lines: int = 5) -> str:
        path = self.layout.logs / log_name
        try:
            text = path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return f"(no {log_name})"
        return f"last lines of {path}: " + " | ".join(text)
