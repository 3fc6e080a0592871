"""Render the configs of a stack: ``supervisord.conf``, ``nginx.conf``, ``haproxy.cfg``.

Pure functions of :class:`StackOptions` and :class:`RunLayout`: no I/O, so the tests check them
with ``nginx -t`` and ``haproxy -c`` and a user can read and reuse what they produce.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from channels_scale.asgi import CONTROL_TOKEN_FILE_ENV
from channels_scale.settings import LAYER_ENV, REDIS_URL_ENV, WORKER_ID_ENV
from channels_scale.stack.limits import Limits
from channels_scale.stack.options import RunLayout, StackOptions

if TYPE_CHECKING:
    from channels_scale.stack.topology import ClusterNode

#: uvicorn's ``websockets-sansio`` with bounds on fragments per message and control frames.
WS_PROTOCOL = "channels_scale.wsprotocol:BoundedWebSocketProtocol"

#: Idle websockets are long-lived: the LB must not cut a quiet tunnel (the server pings it).
TUNNEL_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the programs a stack runs."""

    supervisord: str
    redis_server: str | None
    nginx: str | None
    haproxy: str | None


def _supervisor_value(value: str) -> str:
    """Quote a value for supervisor's ``environment=`` (``%`` would start an expansion)."""
    escaped = value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _command(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args).replace("%", "%%")


def worker_environment(
    options: StackOptions,
    redis_url: str,
    serve_static: bool,
    secrets: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment every worker gets (the worker id is added per process).

    ``secrets`` (e.g. a generated ``SECRET_KEY``) are added as they are; a config holding them
    is written readable by its user only.
    """
    pythonpath = [str(p) for p in options.pythonpath]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    env = {
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "CHANNELS_SCALE_APP": options.app,
        REDIS_URL_ENV: redis_url,
        LAYER_ENV: options.layer,
        "CHANNELS_SCALE_CONSUMER": options.consumer,
        "CHANNELS_SCALE_MAX_MESSAGE_BYTES": str(options.max_message_bytes),
        "CHANNELS_SCALE_SERVE_STATIC": "1" if serve_static else "0",
        "PYTHONUNBUFFERED": "1",
        # POST /drainz needs it (channels-scale restart): see channels_scale.asgi.
        CONTROL_TOKEN_FILE_ENV: str(RunLayout.of(options.run_dir).root / "control.token"),
    }
    if options.settings:
        env["DJANGO_SETTINGS_MODULE"] = options.settings
    env.update(secrets or {})
    return env


def worker_command(options: StackOptions, layout: RunLayout) -> list[str]:
    """The command line of one worker; ``%(process_num)d`` stands for its number."""
    socket = layout.worker_socket_template()
    app = "channels_scale.stack.app:application"
    if options.server == "daphne":
        return [
            options.python, "-m", "daphne", "-u", socket, "--proxy-headers",
            "--ping-interval", str(int(options.ws_ping_interval)),
            "--ping-timeout", str(int(options.ws_ping_interval + options.ws_ping_timeout)),
            "-v", "1", app,
        ]  # fmt: skip
    return [
        options.python, "-m", "uvicorn", app, "--uds", socket,
        # websockets' sans-I/O protocol: no reader/keepalive/close tasks per connection (the
        # legacy "websockets" runs three) and a shorter send path; measured in docs/per-delivery.md.
        # Ours is that class with bounds on fragments and control frames (docs/security.md).
        "--loop", "uvloop", "--http", "httptools", "--ws", WS_PROTOCOL,
        # Compression costs CPU and memory per connection; chat/broadcast frames are small.
        "--ws-per-message-deflate", "false",
        "--ws-max-size", str(options.max_message_bytes),
        "--ws-ping-interval", str(options.ws_ping_interval),
        "--ws-ping-timeout", str(options.ws_ping_timeout),
        "--proxy-headers", "--forwarded-allow-ips", "*",
        "--backlog", "4096", "--no-access-log", "--lifespan", "off",
        # uvicorn logs every accepted websocket at INFO ("WebSocket /ws/..." [accepted]): one
        # line per connection through supervisord's pipe, measured in docs/operations.md.
        "--log-level", "warning",
        "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip


def render_supervisord(
    options: StackOptions,
    layout: RunLayout,
    binaries: Binaries,
    redis_url: str,
    redis_port: int | None,
    serve_static: bool,
    open_files: int,
    secrets: dict[str, str] | None = None,
    redis_conf: Path | None = None,
    cluster_nodes: Sequence[ClusterNode] = (),
) -> str:
    """``supervisord.conf``: Redis (when private), N workers, the load balancer.

    ``cluster_nodes``: the nodes of a private Redis Cluster (``--redis-cluster N``), one program
    ``redis-I`` each, instead of the one private ``redis``.

    ``redis_conf``: a config file the private Redis reads first (its password: kept off the
    command line, which every local user can read).
    """
    root = layout.root
    lines = [
        "; Generated by `channels-scale up`. Run it again with:",
        f";   supervisord -c {layout.supervisord_conf}",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={layout.logs / 'supervisord.log'}",
        f"pidfile={root / 'supervisord.pid'}",
        f"childlogdir={layout.logs}",
        f"minfds={open_files}",
        "loglevel=info",
        "",
        "[unix_http_server]",
        f"file={layout.supervisor_socket}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{layout.supervisor_socket}",
        "",
    ]
    redis_programs: list[tuple[str, int, Path, list[str]]] = []
    if redis_port is not None:
        redis_programs.append(("redis", redis_port, layout.redis_dir, []))
    for i, node in enumerate(cluster_nodes):  # `up --redis-cluster N` (stack/topology.py)
        redis_programs.append((f"redis-{i}", node.port, node.directory, node.args()))
    for name, port, directory, extra in redis_programs if binaries.redis_server else []:
        lines += [
            f"[program:{name}]",
            "command="
            + _command(
                [
                    str(binaries.redis_server),
                    *([str(redis_conf)] if redis_conf else []),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(directory),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--maxclients",
                    str(max(open_files - 64, 1000)),
                    *extra,
                ]
            ),
            "priority=10",
            "autorestart=true",
            "startsecs=0",
            f"stdout_logfile={layout.logs / (name + '.log')}",
            "redirect_stderr=true",
            "",
        ]
    from channels_scale.stack.lbconfigs import adapt_worker_command, lb_program

    env = worker_environment(options, redis_url, serve_static, secrets)
    env_items = [f'{WORKER_ID_ENV}="%(process_num)d"']
    env_items += [f"{key}={_supervisor_value(value)}" for key, value in env.items()]
    lines += [
        "[program:worker]",
        "command="
        + _command(adapt_worker_command(options, layout, worker_command(options, layout))).replace(
            "%%(process_num)d", "%(process_num)d"
        ),
        "process_name=worker-%(process_num)d",
        f"numprocs={options.workers}",
        "numprocs_start=0",
        f"directory={Path.cwd()}",
        "environment=" + ",".join(env_items),
        "priority=20",
        "autorestart=true",
        "startsecs=1",
        "startretries=10",
        "stopsignal=TERM",
        "stopwaitsecs=10",
        "stopasgroup=true",
        "killasgroup=true",
        f"stdout_logfile={layout.logs / 'worker-%(process_num)d.log'}",
        "redirect_stderr=true",
        "",
    ]
    if lb_program(options.lb) == "nginx" and binaries.nginx:
        command = [
            binaries.nginx,
            "-p",
            str(layout.nginx_dir),
            "-c",
            str(layout.nginx_conf),
            "-e",
            "stderr",
        ]
    elif binaries.haproxy:
        command = [binaries.haproxy, "-db", "-f", str(layout.haproxy_cfg)]
    else:
        raise ValueError(f"no binary for load balancer {options.lb}")
    lines += [
        "[program:lb]",
        "command=" + _command(command),
        "priority=30",
        "autorestart=true",
        "startsecs=1",
        # nginx's graceful QUIT would wait for every open websocket: TERM closes them now.
        "stopsignal=TERM",
        "stopwaitsecs=10",
        f"stdout_logfile={layout.logs / (options.lb + '.log')}",
        "redirect_stderr=true",
        "",
    ]
    return "\n".join(lines)


def render_nginx(
    options: StackOptions,
    layout: RunLayout,
    static_url: str | None,
    static_root: Path | None,
    open_files: int,
    run_as_root: bool,
) -> str:
    """``nginx.conf``: ``least_conn`` over the worker sockets, Upgrade headers, long tunnels."""
    nginx = layout.nginx_dir
    # max_fails=0: a refused socket (worker restarting) is retried on the next server
    # (proxy_next_upstream) without marking it down. Marked down (max_fails=1), nginx lets one
    # new connection through per fail_timeout and clears the mark only when that connection ends,
    # which for a websocket is much later: a rolling restart measured ~11 s of 502s (tests/faults).
    servers = "\n".join(
        f"        server unix:{layout.worker_socket(i)} max_fails=0;"
        for i in range(options.workers)
    )
    static = ""
    if static_url and static_root:
        static = f"""
        location {static_url} {{
            alias {static_root}/;
            expires 1h;
            access_log off;
        }}
"""
    user = "user root root;\n" if run_as_root else ""
    limits = Limits(options.max_connections, open_files)
    return f"""# Generated by `channels-scale up`.
# Check it with: nginx -t -p {nginx} -c {layout.nginx_conf}
{user}worker_processes {limits.nginx_workers(os.cpu_count() or 1)};
worker_rlimit_nofile {open_files};
pid {nginx}/nginx.pid;
error_log {layout.logs}/nginx-error.log warn;
daemon off;

events {{
    # Every proxied websocket holds two connections: client side and worker side.
    worker_connections {limits.nginx_worker_connections};
    multi_accept on;
}}

http {{
    # The usual static-file types (as in nginx's own mime.types, which lives at a different
    # path on each system): without them a .jpg or .woff2 is served as octet-stream.
    types {{
        text/html html htm;
        text/css css;
        text/plain txt;
        text/xml xml;
        text/csv csv;
        application/javascript js mjs;
        application/json json map;
        application/manifest+json webmanifest;
        application/wasm wasm;
        application/pdf pdf;
        application/zip zip;
        image/png png;
        image/jpeg jpg jpeg;
        image/gif gif;
        image/webp webp;
        image/avif avif;
        image/svg+xml svg svgz;
        image/x-icon ico;
        font/woff woff;
        font/woff2 woff2;
        font/ttf ttf;
        font/otf otf;
        application/vnd.ms-fontobject eot;
        audio/mpeg mp3;
        audio/ogg ogg;
        video/mp4 mp4;
        video/webm webm;
    }}
    default_type application/octet-stream;
    server_tokens off;
    access_log off;
    sendfile on;
    client_body_temp_path {nginx}/tmp/body;
    proxy_temp_path {nginx}/tmp/proxy;
    fastcgi_temp_path {nginx}/tmp/fastcgi;
    uwsgi_temp_path {nginx}/tmp/uwsgi;
    scgi_temp_path {nginx}/tmp/scgi;

    upstream workers {{
        least_conn;
{servers}
        keepalive 32;
    }}

    # "Connection: upgrade" only for websocket handshakes; plain HTTP keeps upstream keep-alive.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    server {{
        # reuseport: one listening socket per nginx worker, so the kernel spreads connections
        # evenly and no worker runs out of descriptors first (stack/limits.py).
        listen {options.host}:{options.port} backlog=4096 reuseport;
{static}
        location / {{
            proxy_pass http://workers;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            # Overwrite, not append: the workers trust this header (unix sockets, see
            # docs/security.md), so a client must not choose the address they see.
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout {TUNNEL_TIMEOUT_S}s;
            proxy_send_timeout {TUNNEL_TIMEOUT_S}s;
            # A dead worker's socket refuses: try the next one instead of failing the client.
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""


def render_haproxy(options: StackOptions, layout: RunLayout, open_files: int) -> str:
    """``haproxy.cfg``: ``balance leastconn``, ``timeout tunnel``, health checks on ``/healthz``."""
    servers = "\n".join(
        f"    server worker-{i} unix@{layout.worker_socket(i)} check inter 1s fall 2 rise 1"
        for i in range(options.workers)
    )
    return f"""# Generated by `channels-scale up`. Check it with: haproxy -c -f {layout.haproxy_cfg}
global
    maxconn {Limits(options.max_connections, open_files).haproxy_maxconn}
    pidfile {layout.root}/haproxy.pid
    stats socket {layout.haproxy_socket} mode 600 level admin

defaults
    mode http
    option forwardfor
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    # Websockets: once upgraded, the connection is a tunnel; idle peers are found by pings.
    timeout tunnel {TUNNEL_TIMEOUT_S}s
    timeout client-fin 5s

frontend public
    bind {options.host}:{options.port}
    # The workers trust X-Forwarded-For (unix sockets): the client's own copy is replaced.
    http-request set-header X-Forwarded-For %[src]
    default_backend workers

backend workers
    balance leastconn
    option httpchk GET /healthz
    http-check expect status 200
{servers}
"""
