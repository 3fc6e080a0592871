"""Checks and preparations before a stack starts: programs, Redis, the app, the run dir's secrets.

Every function raises :class:`ConfigError` with one line saying what is wrong and how to fix it.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from channels_scale.exceptions import ConfigError
from channels_scale.net import timeout_factor
from channels_scale.settings import redact
from channels_scale.stack.configs import Binaries
from channels_scale.stack.lbconfigs import lb_program
from channels_scale.stack.limits import open_files_for
from channels_scale.stack.options import RunLayout, StackOptions
from channels_scale.stack.probe import MARK


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


def open_files_limit(max_connections: int | None = None) -> int:
    """Open files per process for the stack's programs (supervisord's ``minfds``).

    The soft ``RLIMIT_NOFILE``, or with ``max_connections`` up to the hard one
    (:func:`channels_scale.stack.limits.open_files_for`).
    """
    soft, hard = (
        1 << 20 if value == resource.RLIM_INFINITY else int(value)
        for value in resource.getrlimit(resource.RLIMIT_NOFILE)
    )
    return open_files_for(max_connections, soft, hard)


def find_binaries(options: StackOptions) -> Binaries:
    supervisord = find_binary("supervisord")
    if supervisord is None:
        raise ConfigError("supervisord is not installed: run ./scripts/install")
    redis_server = find_binary("redis-server") if options.redis_url is None else None
    if options.redis_url is None and redis_server is None:
        raise ConfigError(
            "redis-server is not installed: run ./scripts/install "
            "(or apt-get install redis-server), or pass --redis URL"
        )
    program = lb_program(options.lb)  # nginx-stream and direct run nginx, haproxy-tcp HAProxy
    nginx = find_binary("nginx") if program == "nginx" else None
    haproxy = find_binary("haproxy") if program == "haproxy" else None
    if program == "nginx" and nginx is None:
        raise ConfigError(
            "nginx is not installed: run ./scripts/install (or apt-get install nginx)"
        )
    if program == "haproxy" and haproxy is None:
        raise ConfigError(
            "haproxy is not installed: run ./scripts/install (or apt-get install haproxy)"
        )
    return Binaries(supervisord, redis_server, nginx, haproxy)


def check_redis(value: str, layer: str = "channels_scale") -> None:
    """Check ``up --redis VALUE``: every topology the layer accepts (one URL, shards separated by
    commas, ``redis+cluster://``, ``redis+sentinel://``), parsed by the layer's own config code
    and reached as the layer reaches it (:mod:`channels_scale.layer.reach`: every shard answers,
    every cluster seed says ``cluster_state:ok``, Sentinel names a master that answers)."""
    import asyncio

    from channels_scale.layer.config import decode_hosts, split_hosts
    from channels_scale.layer.reach import Unreachable, reach_all

    parts = split_hosts(value)

    def invalid(exc: Exception) -> ConfigError:
        message = str(exc)
        for part in parts:  # the layer's message may quote a URL with its password
            message = message.replace(part, masked(part))
        return ConfigError(f"--redis {masked(value)} is invalid: {message}")

    try:
        hosts = decode_hosts(parts)
    except ConfigError as exc:
        raise invalid(exc) from None
    if layer != "channels_scale" and any(h.url and "+" in h.url.partition("://")[0] for h in hosts):
        raise ConfigError(
            f"--layer {layer} takes only redis:// URLs (one, or shards): "
            "redis+cluster:// and redis+sentinel:// need --layer channels_scale"
        )
    try:
        asyncio.run(reach_all(hosts, 3 * timeout_factor()))
    except Unreachable as exc:
        raise ConfigError(
            f"{exc}: start it, fix --redis, or leave --redis out to run a private one"
        ) from None
    except (ConfigError, ValueError) as exc:  # e.g. a port that is not a number
        raise invalid(exc) from None


def masked(url: str) -> str:
    """``url`` (or ``--redis``'s comma-separated URLs) with every password replaced by ``***``
    (for output, logs and ``stack.json``)."""
    return redact(url)


def private_redis_url(port: int, password: str) -> str:
    return f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0"


def run_dir_secret(path: Path) -> str:
    """The secret kept in ``path``, or a new random one (not stored: see :func:`keep_secret`)."""
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    return kept or secrets.token_urlsafe(32)


def keep_secret(path: Path, secret: str) -> None:
    """Store ``secret`` in ``path`` readable by this user only, so the next run reuses it."""
    write_private(path, secret + "\n")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (configs that hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older copy may have been created with wider permissions
    with os.fdopen(fd, "w") as out:
        out.write(text)


def redis_conf(password: str) -> str:
    """Settings for the private redis-server kept out of its command line (``ps`` shows that)."""
    escaped = password.replace("\\", "\\\\").replace('"', '\\"')
    header = "# Generated by `channels-scale up`, readable by its user only.\n"
    # masterauth: a cluster replica (`up --redis-cluster`) authenticates to its master with it
    return header + f'requirepass "{escaped}"\nmasterauth "{escaped}"\n'


def clean_run_dir(layout: RunLayout) -> None:
    """Remove a previous run's sockets and keep its logs as ``NAME.1``.

    Called only while holding the run directory's lock, so nothing of a live stack is touched.
    A socket file left by a crashed uvicorn makes daphne fail to bind (and vice versa).
    """
    for path in [*layout.sockets.glob("*.sock"), layout.supervisor_socket, layout.haproxy_socket]:
        if path.is_socket():
            path.unlink()
    for log in layout.logs.iterdir():
        if log.suffix in (".log", ".out") and log.is_file():
            log.replace(log.with_name(log.name + ".1"))
    # A cluster node that finds a previous run's node file rejoins that (gone) cluster.
    for node_file in layout.redis_dir.glob("node-*/nodes.conf"):
        node_file.unlink()


@dataclass(frozen=True)
class AppFacts:
    """What the probe found out about the user's app."""

    static_url: str | None
    static_root: Path | None
    #: The app's Django ``SECRET_KEY`` is :data:`PUBLIC_SECRET_KEY`.
    public_secret_key: bool
    #: The app's ``SECRET_KEY`` is the one given in the environment (it reads ``SECRET_KEY``).
    secret_key_from_env: bool
    #: The app configured Django settings (so the two above mean something).
    django: bool
    #: Everything the probe printed (stack/overlay.py reads the project's CHANNEL_LAYERS in it).
    raw: dict[str, Any] = field(default_factory=dict)


def probe_app(options: StackOptions, env: dict[str, str]) -> AppFacts:
    """Import the app as a worker would (``python -m channels_scale.stack.probe``) and check it."""
    try:
        done = subprocess.run(
            [options.python, "-m", "channels_scale.stack.probe"],
            env=env,
            capture_output=True,
            timeout=60 * timeout_factor(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(f"importing --app {options.app} took over 60 s") from None
    lines = done.stdout.decode(errors="replace").splitlines()
    found = [json.loads(line[len(MARK) :]) for line in lines if line.startswith(MARK)]
    if not found:
        tail = done.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(
            f"cannot load --app {options.app}: {tail[-1] if tail else 'no output'} "
            "(check --app, --settings and --pythonpath)"
        )
    answer = found[-1]
    if "error" in answer:
        raise ConfigError(f"cannot load --app {options.app}: {answer['error']}")
    root = Path(answer["static_root"]) if answer.get("static_root") else None
    return AppFacts(
        answer.get("static_url"),
        root if root and root.is_dir() else None,
        bool(answer.get("public_secret_key")),
        bool(answer.get("secret_key_from_env")),
        "public_secret_key" in answer,
        answer,
    )
