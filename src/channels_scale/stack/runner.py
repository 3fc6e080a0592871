"""Bring a stack up under supervisor, check it, and take down exactly its own processes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import time
from dataclasses import asdict
from types import TracebackType
from typing import Any

from channels_scale.exceptions import ConfigError, StackError
from channels_scale.net import free_port, port_in_use, timeout_factor
from channels_scale.stack import control, overlay, readiness, restart
from channels_scale.stack.configs import Binaries, render_supervisord, worker_environment
from channels_scale.stack.health import haproxy_servers_up, http_status, worker_health
from channels_scale.stack.lbconfigs import (
    lb_program,
    nginx_serves_static,
    render_lb_config,
    workers_serve_static,
)
from channels_scale.stack.limits import Limits
from channels_scale.stack.options import MAX_SOCKET_PATH, RunLayout, StackOptions
from channels_scale.stack.preflight import (
    AppFacts,
    check_redis,
    clean_run_dir,
    find_binaries,
    find_binary,
    keep_secret,
    masked,
    open_files_limit,
    private_redis_url,
    probe_app,
    redis_conf,
    run_dir_secret,
    write_private,
)
from channels_scale.stack.processes import ProcessId, children_of
from channels_scale.stack.topology import (
    ClusterNode,
    cluster_url,
    create_cluster,
    find_redis_cli,
    plan_nodes,
)

__all__ = ["Stack", "find_binary"]

START_TIMEOUT_S = 60.0


class Stack:
    """Redis + N ASGI workers + a load balancer under supervisor, from :class:`StackOptions`.

    Use as a context manager (``with Stack(options) as stack:``) or call :meth:`start` and
    :meth:`stop`. :meth:`start` returns once every worker answers ``/healthz`` through its socket,
    the load balancer answers and supervisor reports every process RUNNING; it raises
    :class:`ConfigError` for bad input (nothing is started, nothing of another stack touched)
    and :class:`StackError` when a part does not come up (what it started is stopped).
    :attr:`notes` says which secrets the stack chose.
    """

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.layout = RunLayout.of(options.run_dir)
        self.redis_url = options.redis_url or ""
        self.notes: list[str] = []
        self._redis_port: int | None = None
        self._redis_password: str | None = None
        #: the private cluster's nodes (``--redis-cluster N``) and the redis-cli that makes it
        self._cluster: tuple[ClusterNode, ...] = ()
        self._redis_cli = ""
        self._secrets: dict[str, str] = {}
        self._lock = control.RunLock(self.layout)
        self._supervisord: subprocess.Popen[bytes] | None = None
        self._supervisord_id: ProcessId | None = None
        self._app = AppFacts(None, None, False, False, False)
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
        try:
            binaries = self._preflight()
            self._write_configs(binaries)
            self._check_lb_config(binaries)
            self._launch(binaries)
            if self._cluster:  # its nodes run under supervisor now: give them the slots
                create_cluster(self._redis_cli, self._cluster, self._redis_password)
            self._wait_healthy()
            self.layer_summary = readiness.check(self)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> list[control.Member]:
        """Stop what this object started (nothing else); the processes that were running."""
        stopped: list[control.Member] = []
        proc = self._supervisord
        if proc is not None:
            if self._supervisord_id is not None:
                stopped = control.stop(self.layout, self._supervisord_id)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10 * timeout_factor())  # reap it (SIGKILLed already if stuck)
        self._supervisord = None
        self._lock.release()
        return stopped

    def detach(self) -> None:
        """Leave the stack running after this process exits; ``channels-scale down`` stops it.

        supervisord runs in a session of its own (a closed terminal does not reach it) and keeps
        the run directory's lock.
        """
        self._supervisord = None
        self._lock.release()

    def wait(self) -> int:
        """Block until supervisord exits; its exit code."""
        if self._supervisord is None:
            return 0
        return self._supervisord.wait()

    def running(self) -> bool:
        return self._supervisord is not None and self._supervisord.poll() is None

    def server_pids(self) -> list[int]:
        """Pids of every server-side process: workers, the private Redis, the LB and its workers."""
        pids = [int(p["pid"]) for p in self.processes() if p.get("pid")]
        return sorted({*pids, *(c for pid in pids for c in children_of(pid))})

    def processes(self) -> list[dict[str, Any]]:
        return control.supervisor_processes(self.layout) or []

    # -- steps ----------------------------------------------------------------------------------

    def _preflight(self) -> Binaries:
        options = self.options
        problems = options.problems()
        limits = Limits(options.max_connections, open_files_limit(options.max_connections))
        problems += limits.problems(options.lb, options.workers)
        if problems:
            raise ConfigError(problems[0])
        binaries = find_binaries(options)
        self._prepare_run_dir()
        if port_in_use(options.host, options.port):
            raise ConfigError(
                f"port {options.port} on {options.host} is in use: choose another with --port"
            )
        if options.lb == "direct" and options.http_port is None:
            # A free port rather than a fixed offset: `up` prints it (and --http-port fixes it).
            self.options = options = dataclasses.replace(options, http_port=free_port(options.host))
        if options.lb == "direct" and port_in_use(options.host, options.lb_http_port):
            raise ConfigError(
                f"port {options.lb_http_port} on {options.host} (nginx's HTTP port with --lb "
                "direct) is in use: choose another with --http-port"
            )
        if options.redis_url is None:
            if options.redis_cluster:
                self._redis_cli = find_redis_cli()
                self._cluster = plan_nodes(options.redis_cluster, self.layout.redis_dir)
            else:
                self._redis_port = options.redis_port or free_port()
            self._redis_password = options.redis_password
            if self._redis_password is None:
                self._redis_password = run_dir_secret(self.layout.redis_password_file)
                keep_secret(self.layout.redis_password_file, self._redis_password)
                self.notes.append(
                    f"Redis password: generated for this run dir, in "
                    f"{self.layout.redis_password_file} (mode 0600)"
                )
            self.redis_url = (
                cluster_url(self._cluster, self._redis_password)
                if self._cluster
                else private_redis_url(self._redis_port or 0, self._redis_password)
            )
        else:
            check_redis(options.redis_url, options.layer)
        self._probe_app()
        return binaries

    def _prepare_run_dir(self) -> None:
        layout = self.layout
        try:
            layout.root.mkdir(parents=True, exist_ok=True)
            locked = self._lock.acquire()
        except OSError as exc:
            raise ConfigError(
                f"run directory {layout.root} is not writable ({exc.strerror}): "
                "choose another with --run-dir"
            ) from None
        if not locked or control.supervisor_processes(layout) is not None:
            self._lock.release()
            raise ConfigError(
                f"a stack is already running in {layout.root}: stop it with "
                f"`channels-scale down --run-dir {layout.root}` or choose another --run-dir"
            )
        # From here on this process owns the directory: no stack of ours runs there, so the
        # sockets and logs below are a previous run's.
        for path in (layout.sockets, layout.logs, layout.redis_dir, layout.nginx_dir / "tmp"):
            path.mkdir(parents=True, exist_ok=True)
        # uvicorn makes its sockets 0666: without this, any local user could reach a worker
        # directly, around the load balancer's limits and forwarded-address rewrite. The LB runs
        # as this user (configs.render_nginx: `user root` only when we are root).
        layout.sockets.chmod(0o700)
        if layout.longest_socket_path(self.options.workers) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"run directory {layout.root} is too deep for unix socket paths "
                f"(max {MAX_SOCKET_PATH} bytes): choose a shorter --run-dir"
            )
        clean_run_dir(layout)

    def _probe_app(self) -> None:
        options = self.options
        env = {**os.environ, **worker_environment(options, self.redis_url, False)}
        if options.collectstatic and nginx_serves_static(options.lb):
            # nginx serves STATIC_ROOT: a stale copy would serve old JS next to new code.
            env["CHANNELS_SCALE_COLLECTSTATIC"] = "1"
        generated = None
        if "SECRET_KEY" not in os.environ:
            # Offered to the app through the environment; kept only if its settings read it.
            generated = run_dir_secret(self.layout.secret_key_file)
            env["SECRET_KEY"] = generated
        self._app = probe_app(options, env)
        if self._app.public_secret_key and not options.insecure_secret_key:
            raise ConfigError(
                "the app's SECRET_KEY is the example's public default: set your own (SECRET_KEY "
                "in its settings or environment), or pass --insecure-secret-key for local "
                "development only"
            )
        if self._app.public_secret_key:
            self.notes.append("SECRET_KEY: the public default (--insecure-secret-key): dev only")
        elif generated is not None and self._app.secret_key_from_env:
            self._secrets["SECRET_KEY"] = generated
            keep_secret(self.layout.secret_key_file, generated)  # sessions survive a restart
            self.notes.append(
                f"SECRET_KEY: generated for this run dir, in {self.layout.secret_key_file} "
                "(mode 0600)"
            )
        elif self._app.secret_key_from_env:
            self.notes.append("SECRET_KEY: from the environment")
        elif self._app.django:
            self.notes.append("SECRET_KEY: the app's own (from its settings)")
        restart.write_control_token(self.layout)
        self.options, self.layer_summary = overlay.apply(
            self.options, self.layout, self._app.raw, self.redis_url
        )

    def _write_configs(self, binaries: Binaries) -> None:
        options, layout = self.options, self.layout
        open_files = open_files_limit(options.max_connections)
        static_url, static_root = self._app.static_url, self._app.static_root
        nginx_static = nginx_serves_static(options.lb) and static_root is not None
        if static_url and static_url.startswith("http"):
            nginx_static = False
        if self._redis_password is not None:
            write_private(layout.redis_conf, redis_conf(self._redis_password))
        write_private(
            layout.supervisord_conf,
            render_supervisord(
                options, layout, binaries, self.redis_url, self._redis_port,
                # Django's staticfiles handler refuses to start without a STATIC_URL.
                serve_static=bool(static_url) and workers_serve_static(options.lb, nginx_static),
                open_files=open_files,
                secrets=self._secrets,
                redis_conf=layout.redis_conf if self._redis_password is not None else None,
                cluster_nodes=self._cluster,
            ),
        )  # fmt: skip
        static = (static_url, static_root) if nginx_static and static_url and static_root else None
        path, text = render_lb_config(
            options, layout, binaries.nginx, static, open_files, run_as_root=os.geteuid() == 0
        )
        path.write_text(text)
        self._write_state()

    def _write_state(self) -> None:
        options, layout = self.options, self.layout
        hidden = {"redis_password", "redis_url"}
        state = {
            "options": {k: str(v) for k, v in asdict(options).items() if k not in hidden},
            "workers": options.workers,
            "url": self.http_url,
            "redis_url": masked(self.redis_url),
            "sockets": [str(layout.worker_socket(i)) for i in range(options.workers)],
        }
        if self._supervisord_id is not None:
            state["supervisord"] = asdict(self._supervisord_id)
        layout.state_file.write_text(json.dumps(state, indent=2))

    def _check_lb_config(self, binaries: Binaries) -> None:
        layout = self.layout
        if lb_program(self.options.lb) == "nginx" and binaries.nginx:
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
        assert self._lock.fd is not None
        # A session of its own: Ctrl-C or a closed terminal reaches `channels-scale up`, which
        # then stops supervisord in order, instead of every child getting the signal at once;
        # and a detached stack outlives the terminal. supervisord inherits the run dir's lock.
        self._supervisord = subprocess.Popen(
            [binaries.supervisord, "-c", str(self.layout.supervisord_conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(self._lock.fd,),
        )
        log.close()
        self._supervisord_id = ProcessId.of(self._supervisord.pid)
        self._write_state()

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
                and self._supervisor_reports_running()
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

    def _supervisor_reports_running(self) -> bool:
        """Every program past its ``startsecs`` (so ``status`` and the table say RUNNING)."""
        info = self.processes()
        return bool(info) and all(p.get("statename") == "RUNNING" for p in info)

    def _lb_sees_every_worker(self) -> bool:
        """HAProxy marks a server down until a health check passes: wait for all to be up.

        nginx has no such state (a refused socket is retried on the next server). In direct
        mode the public port is the workers': nginx answers on the HTTP port.
        """
        options = self.options
        if options.lb == "direct":
            return http_status(options.host, options.lb_http_port, timeout=1) == 200
        if lb_program(options.lb) != "haproxy":
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
