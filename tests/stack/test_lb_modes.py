"""``up --lb nginx-stream | haproxy-tcp | direct``: real nginx, HAProxy, uvicorn, Redis; 2 workers.

The three stacks start together (one module fixture) to keep the added time small; the HTTP modes
(nginx, haproxy) are covered by test_e2e.py and test_restart.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from channels_scale.net import free_port, timeout_factor, wait_until
from channels_scale.stack.health import http_status, worker_health
from channels_scale.stack.lbconfigs import adapt_worker_command
from channels_scale.stack.options import RunLayout, StackOptions
from channels_scale.stack.restart import _drain
from channels_scale.stack.reuseport import parse_listen, trust_forwarded_on_unix_socket
from tests.conftest import RedisProcess, example_environment
from tests.stack.test_cli_errors import _assert_clean_failure
from tests.stackrunner import RunningStack, run_cli

pytestmark = pytest.mark.e2e
WAIT = 10 * timeout_factor()
MODES = ("nginx-stream", "haproxy-tcp", "direct")


@pytest.fixture(scope="module")
def stacks(
    tmp_path_factory: pytest.TempPathFactory, shared_redis: RedisProcess
) -> Iterator[dict[str, RunningStack]]:
    root = tmp_path_factory.mktemp("lbmodes")
    env = example_environment(root)
    started: dict[str, RunningStack] = {}
    # Every port is chosen here, before any stack starts: a private Redis each would pick its
    # port (free_port) while the other stacks' chosen ports are not bound yet, and could take one.
    ports = {mode: free_port() for mode in MODES}
    http_port = free_port()
    try:
        for mode in MODES:
            extra = ["--http-port", str(http_port)] if mode == "direct" else []
            started[mode] = RunningStack(
                ["--workers", "2", "--lb", mode, "--insecure-secret-key", "--redis",
                 shared_redis.url, *extra],
                env, root / mode, ports[mode],
            )  # fmt: skip
        for stack in started.values():
            stack.wait_up(timeout=120)
        yield started
    finally:
        for stack in started.values():
            stack.stop()


def _http_port(stack: RunningStack) -> int:
    """nginx's port of a direct stack, as ``up`` printed it."""
    line = next(line for line in stack.output if line.startswith("nginx (HTTP"))
    return int(line.strip().rstrip("/").rsplit(":", 1)[1])


def _websockets(stack: RunningStack) -> list[int]:
    layout = RunLayout.of(stack.run_dir)
    answers = [worker_health(layout.worker_socket(w)) for w in (0, 1)]
    return [int(a["websockets"]) if a else -1 for a in answers]


def _raw_status(port: int, request: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
    return int(head.split()[1]), head


def _handshake(path: str, host: str) -> str:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )


async def _clients_on_both_workers(stack: RunningStack, url: str) -> list[ClientConnection]:
    """Connect until both workers serve some (direct: the kernel's hash picks the worker)."""
    clients: list[ClientConnection] = []
    while len(clients) < 6 or min(_websockets(stack)) == 0:
        assert len(clients) < 60, f"every client landed on one worker: {_websockets(stack)}"
        clients.append(await connect(url, open_timeout=WAIT))
    return clients


@pytest.mark.parametrize("mode", MODES)
async def test_mode_serves_websockets_pages_and_static_and_refuses_a_bad_host(
    stacks: dict[str, RunningStack], mode: str
) -> None:
    stack = stacks[mode]
    path = f"/ws/broadcast/lb-{mode}/"
    url = stack.ws_url + path
    clients = await _clients_on_both_workers(stack, url)
    try:
        await clients[0].send("across workers")
        received = await asyncio.gather(*(asyncio.wait_for(c.recv(), WAIT) for c in clients))
        assert received == ["across workers"] * len(clients)
    finally:
        await asyncio.gather(*(c.close() for c in clients))

    ports = [stack.port] + ([_http_port(stack)] if mode == "direct" else [])
    for port in ports:
        assert http_status("127.0.0.1", port, "/login/") == 200  # a Django page
        assert http_status("127.0.0.1", port, "/healthz") == 200
        assert http_status("127.0.0.1", port, "/static/channels_scale/client.js") == 200
        bad_host = "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        assert _raw_status(port, bad_host)[0] == 400
    # A websocket handshake for a foreign Host is refused by the worker (L4: the LB is blind).
    assert _raw_status(stack.port, _handshake(path, "evil.example"))[0] == 400


async def test_direct_port_layout_and_drain(stacks: dict[str, RunningStack]) -> None:
    stack = stacks["direct"]
    http_port = _http_port(stack)
    layout = RunLayout.of(stack.run_dir)
    # --port: the workers themselves (their /healthz); --http-port: nginx, which refuses websockets.
    answer = worker_health(layout.worker_socket(0))
    assert answer is not None
    status, head = _raw_status(http_port, _handshake("/ws/broadcast/x/", f"127.0.0.1:{http_port}"))
    assert status == 421 and b"Server: nginx" in head
    ok = _handshake("/ws/broadcast/x/", f"127.0.0.1:{stack.port}")
    assert _raw_status(stack.port, ok)[0] == 101

    # Draining worker-0 closes its share of the port first: new connections all go to worker-1.
    url = f"{stack.ws_url}/ws/broadcast/drain/"
    assert wait_until(lambda: _websockets(stack) == [0, 0], WAIT)
    before = _websockets(stack)
    _drain(layout, 0, 0)
    clients = [await connect(url, open_timeout=WAIT) for _ in range(12)]
    try:
        after = _websockets(stack)
        assert after[0] == before[0] and after[1] == before[1] + 12, (before, after)
    finally:
        await asyncio.gather(*(c.close() for c in clients))

    done = run_cli("restart", "--rolling", "--run-dir", str(stack.run_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("restarted in") == 2
    # Both restarted workers share the port again (the kernel spreads new connections).
    clients = await _clients_on_both_workers(stack, url)
    await asyncio.gather(*(c.close() for c in clients))
    assert wait_until(lambda: _websockets(stack) == [0, 0], WAIT)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--lb", "direct", "--server", "daphne"], "--lb direct shares the port through uvicorn"),
        (["--lb", "nginx", "--http-port", "9999"], "--http-port is for --lb direct"),
    ],
)
def test_unsupported_combination_exits_2(tmp_path: Path, args: list[str], expected: str) -> None:
    done = run_cli("up", "--run-dir", str(tmp_path / "run"), "--port", str(free_port()), *args)
    _assert_clean_failure(done, tmp_path / "run", expected)


def test_l4_workers_trust_no_forwarded_header(tmp_path: Path) -> None:
    options = StackOptions(lb="haproxy-tcp", run_dir=tmp_path)
    command = adapt_worker_command(
        options, RunLayout.of(tmp_path), ["py", "-m", "uvicorn", "app", "--proxy-headers",
                                          "--forwarded-allow-ips", "*", "--no-access-log"]
    )  # fmt: skip
    assert command == ["py", "-m", "uvicorn", "app", "--no-proxy-headers", "--no-access-log"]
    direct = adapt_worker_command(
        StackOptions(lb="direct", host="::1", port=8123, run_dir=tmp_path),
        RunLayout.of(tmp_path), ["py", "-m", "uvicorn", "app", "--uds", "s"],
    )  # fmt: skip
    assert direct[:5] == ["py", "-m", "channels_scale.stack.reuseport", "--listen", "[::1]:8123"]
    assert parse_listen(direct[4]) == ("::1", 8123)


async def test_direct_trusts_forwarded_for_only_from_the_unix_socket() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"])

    wrapped = trust_forwarded_on_unix_socket(app)
    headers = [(b"x-forwarded-for", b"203.0.113.9")]
    unix = {"type": "http", "server": ("/run/w.sock", None), "client": None, "headers": headers}
    tcp = {"type": "http", "server": ("127.0.0.1", 8000), "client": ("198.51.100.7", 5000)}
    await wrapped({**unix}, None, None)
    await wrapped({**tcp, "headers": headers}, None, None)
    assert seen == [("203.0.113.9", 0), ("198.51.100.7", 5000)]
