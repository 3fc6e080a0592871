"""The load balancer modes of ``channels-scale up --lb``, beside the HTTP ones of configs.py.

==============  ===========================================================================
mode            what listens on ``--port``
==============  ===========================================================================
nginx           nginx, HTTP proxy: websockets are upgraded tunnels; static files by nginx
haproxy         HAProxy, ``mode http``; static files by the workers
nginx-stream    nginx ``stream`` (L4): bytes to the workers' unix sockets; static by the workers
haproxy-tcp     HAProxy ``mode tcp`` with ``option splice-auto``; static by the workers
direct          the workers themselves, sharing the port with ``SO_REUSEPORT``
                (stack/reuseport.py); nginx serves HTTP and static files on ``--http-port``
==============  ===========================================================================

The L4 modes cannot rewrite ``X-Forwarded-For``: their workers trust no forwarded header (else a
client would choose the address the app sees) and see no client address (uvicorn has no PROXY
protocol). ``Host``/``Origin`` are checked by the workers (channels_scale.asgi), so every mode
keeps them. Renderers are pure (the runner writes what they return), like configs.py's.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

from channels_scale.exceptions import ConfigError
from channels_scale.stack.configs import TUNNEL_TIMEOUT_S, render_haproxy, render_nginx
from channels_scale.stack.limits import Limits
from channels_scale.stack.options import RunLayout, StackOptions

#: Modes that proxy bytes, not HTTP.
L4_MODES = ("nginx-stream", "haproxy-tcp")
#: where render_nginx_direct puts its refusal of websocket handshakes
_LOCATION_ANCHOR = "        location / {\n"


def lb_program(lb: str) -> str:
    """The program that runs as supervisor's ``lb``: ``nginx`` or ``haproxy``."""
    return "haproxy" if lb.startswith("haproxy") else "nginx"


def nginx_serves_static(lb: str) -> bool:
    return lb in ("nginx", "direct")


def workers_serve_static(lb: str, nginx_static: bool) -> bool:
    """Whether the workers serve static files themselves (when the app has a ``STATIC_URL``).

    In direct mode both do: the app on ``--port`` is the workers alone, nginx's copy is on
    ``--http-port``.
    """
    return lb == "direct" or not nginx_static


def adapt_worker_command(options: StackOptions, layout: RunLayout, command: list[str]) -> list[str]:
    """A worker's command line for ``options.lb`` (the HTTP modes: ``command`` as it is).

    L4 modes: no forwarded header is trusted. Direct: the uvicorn arguments (``--uds`` and all)
    are run by stack/reuseport.py, which also listens on the public port.
    """
    if options.lb in L4_MODES:
        adapted = list(command)
        if "--proxy-headers" in adapted:
            at = adapted.index("--proxy-headers")
            end = at + 3 if adapted[at + 1 : at + 2] == ["--forwarded-allow-ips"] else at + 1
            adapted[at:end] = ["--no-proxy-headers"] if options.server == "uvicorn" else []
        return adapted
    if options.lb == "direct":
        if command[1:3] != ["-m", "uvicorn"]:
            raise ValueError("--lb direct runs uvicorn workers")
        listen = f"[{options.host}]" if ":" in options.host else options.host
        return [
            command[0], "-m", "channels_scale.stack.reuseport",
            "--listen", f"{listen}:{options.port}", *command[3:],
        ]  # fmt: skip
    return command


def nginx_stream_module(nginx: str) -> Path | None:
    """The ``load_module`` path nginx needs for ``stream`` (None: built in); ConfigError if none.

    Debian builds it as a dynamic module, packaged apart (libnginx-mod-stream).
    """
    built = subprocess.run([nginx, "-V"], capture_output=True, check=False, timeout=30)
    flags = (built.stdout + built.stderr).decode(errors="replace")
    if re.search(r"--with-stream(\s|$)", flags):
        return None
    found = re.search(r"--modules-path=(\S+)", flags)
    module = Path(found.group(1) if found else "/usr/lib/nginx/modules") / "ngx_stream_module.so"
    if "--with-stream=dynamic" in flags and module.is_file():
        return module
    raise ConfigError(
        "--lb nginx-stream needs nginx's stream module: run ./scripts/install "
        "(or apt-get install libnginx-mod-stream)"
    )


def _nginx_stream_head(
    options: StackOptions, layout: RunLayout, open_files: int, run_as_root: bool
) -> str:
    """The main and ``events`` blocks, sized by stack/limits.py as configs.render_nginx's are."""
    user = "user root root;\n" if run_as_root else ""
    nginx = layout.nginx_dir
    limits = Limits(options.max_connections, open_files)
    return f"""{user}worker_processes {limits.nginx_workers(os.cpu_count() or 1)};
worker_rlimit_nofile {open_files};
pid {nginx}/nginx.pid;
error_log {layout.logs}/nginx-error.log warn;
daemon off;

events {{
    # Every proxied websocket holds two connections: client side and worker side.
    worker_connections {limits.nginx_worker_connections};
    multi_accept on;
}}
"""


def render_nginx_stream(
    options: StackOptions,
    layout: RunLayout,
    open_files: int,
    run_as_root: bool,
    module: Path | None,
) -> str:
    """``nginx.conf`` for ``--lb nginx-stream``: L4 ``least_conn`` over the worker sockets."""
    # max_fails=0 as in configs.render_nginx: a refused socket is retried on the next server.
    servers = "\n".join(
        f"        server unix:{layout.worker_socket(i)} max_fails=0;"
        for i in range(options.workers)
    )
    load = f"load_module {module};\n" if module else ""
    return f"""# Generated by `channels-scale up --lb nginx-stream`.
# Check it with: nginx -t -p {layout.nginx_dir} -c {layout.nginx_conf}
{load}{_nginx_stream_head(options, layout, open_files, run_as_root)}
stream {{
    upstream workers {{
        least_conn;
{servers}
    }}

    server {{
        # reuseport: one listening socket per nginx worker, so the kernel spreads connections
        # evenly and no worker runs out of descriptors first (stack/limits.py).
        listen {options.host}:{options.port} backlog=4096 reuseport;
        proxy_pass workers;
        # Bytes both ways, no HTTP: the workers see no client address and trust no
        # X-Forwarded-For (docs/operations.md).
        proxy_timeout {TUNNEL_TIMEOUT_S}s;
        proxy_connect_timeout 2s;
        proxy_next_upstream on;
    }}
}}
"""


def render_haproxy_tcp(options: StackOptions, layout: RunLayout, open_files: int) -> str:
    """``haproxy.cfg`` for ``--lb haproxy-tcp``: ``mode tcp``, splicing, HTTP health checks."""
    servers = "\n".join(
        f"    server worker-{i} unix@{layout.worker_socket(i)} check inter 1s fall 2 rise 1"
        for i in range(options.workers)
    )
    # Each connection holds two fds (client, worker) and each pipe of a splice two more: the
    # sum must fit in the fd limit, or HAProxy refuses to start.
    pipes = max((open_files - 64) // 10, 64)
    maxconn = max((open_files - 64 - 2 * pipes) // 2 - 32, 512)
    return f"""# Generated by `channels-scale up --lb haproxy-tcp`.
# Check it with: haproxy -c -f {layout.haproxy_cfg}
global
    maxconn {maxconn}
    maxpipes {pipes}
    pidfile {layout.root}/haproxy.pid
    stats socket {layout.haproxy_socket} mode 600 level admin

defaults
    mode tcp
    # Kernel splice(2) moves the bytes without copying them through HAProxy where it can.
    option splice-auto
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # Idle websockets are found by the workers' pings; the tunnel may stay quiet meanwhile.
    timeout tunnel {TUNNEL_TIMEOUT_S}s
    timeout client-fin 5s

frontend public
    bind {options.host}:{options.port}
    default_backend workers

backend workers
    balance leastconn
    # The health checks still speak HTTP (to each worker's /healthz).
    option httpchk GET /healthz
    http-check expect status 200
{servers}
"""


def render_nginx_direct(nginx_conf: str, options: StackOptions) -> str:
    """The HTTP ``nginx.conf`` (configs.render_nginx's, rendered for ``--http-port``) with
    websocket handshakes answered 421: in direct mode they belong on the workers' port."""
    if _LOCATION_ANCHOR not in nginx_conf:
        raise ValueError("nginx.conf has no `location /` block")
    refuse = (
        "            # --lb direct: websockets are served by the workers on the public port.\n"
        "            if ($http_upgrade) {\n"
        f'                return 421 "websockets: port {options.port}\\n";\n'
        "            }\n"
    )
    return nginx_conf.replace(_LOCATION_ANCHOR, _LOCATION_ANCHOR + refuse, 1).replace(
        "# Generated by `channels-scale up`.",
        f"# Generated by `channels-scale up --lb direct`: HTTP on {options.lb_http_port}, "
        f"websockets on the workers' port {options.port}.",
        1,
    )


def nginx_http_options(options: StackOptions) -> StackOptions:
    """The options configs.render_nginx renders for: in direct mode, nginx on ``--http-port``."""
    return dataclasses.replace(options, port=options.lb_http_port)


def render_lb_config(
    options: StackOptions,
    layout: RunLayout,
    nginx: str | None,
    static: tuple[str, Path] | None,
    open_files: int,
    run_as_root: bool,
) -> tuple[Path, str]:
    """The LB's config file for ``options.lb`` and its text; ``static``: what nginx serves."""
    url, root = static if static else (None, None)
    if options.lb == "haproxy":
        return layout.haproxy_cfg, render_haproxy(options, layout, open_files)
    if options.lb == "haproxy-tcp":
        return layout.haproxy_cfg, render_haproxy_tcp(options, layout, open_files)
    if options.lb == "nginx-stream":
        module = nginx_stream_module(nginx or "nginx")
        return layout.nginx_conf, render_nginx_stream(
            options, layout, open_files, run_as_root, module
        )
    conf = render_nginx(nginx_http_options(options), layout, url, root, open_files, run_as_root)
    if options.lb == "direct":
        conf = render_nginx_direct(conf, options)
    return layout.nginx_conf, conf
