"""Ask a worker (over its unix socket) or the load balancer (over TCP) for ``/healthz``."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


def _get(sock: socket.socket, host: str, path: str) -> tuple[int, bytes]:
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("latin1")
    )
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError(f"not an HTTP answer: {raw[:80]!r}")
    return int(status_line[1]), body


def worker_health(socket_path: Path, timeout: float = 2.0) -> dict[str, Any] | None:
    """The worker's ``/healthz`` JSON, or None when it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            status, body = _get(sock, "localhost", "/healthz")
    except OSError:
        return None
    if status != 200:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def haproxy_servers_up(stats_socket: Path, timeout: float = 2.0) -> dict[str, bool]:
    """``{server: is_up}`` for every server HAProxy's stats socket lists (empty: no answer)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(stats_socket))
            sock.sendall(b"show stat\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return {}
    lines = b"".join(chunks).decode(errors="replace").splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    name, status = header.index("svname"), header.index("status")
    servers = {}
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) > status and fields[name] not in ("FRONTEND", "BACKEND"):
            servers[fields[name]] = fields[status] == "UP"
    return servers


def http_status(host: str, port: int, path: str = "/healthz", timeout: float = 2.0) -> int | None:
    """The HTTP status of ``GET path`` on ``host:port``, or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return _get(sock, f"{host}:{port}", path)[0]
    except OSError:
        return None
