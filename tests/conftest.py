"""Fixtures shared by the whole suite: real services started on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from channels_scale.net import free_port, timeout_factor, wait_until
from tests.stackrunner import RunningStack

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"


def scaled(seconds: float) -> float:
    """A timeout scaled by ``CHANNELS_SCALE_TIMEOUT_FACTOR``."""
    return seconds * timeout_factor()


@dataclass(frozen=True)
class RedisTLS:
    """Files for a TLS-only redis-server (PEM paths); ``auth_clients``: ``no``, ``optional``
    or ``yes`` (redis-server's ``--tls-auth-clients``: whether a client certificate is required).
    """

    cert_file: Path
    key_file: Path
    ca_file: Path
    auth_clients: str = "no"

    def args(self, port: int) -> list[str]:
        return [
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(self.cert_file),
            "--tls-key-file",
            str(self.key_file),
            "--tls-ca-cert-file",
            str(self.ca_file),
            "--tls-auth-clients",
            self.auth_clients,
        ]


class RedisProcess:
    """A real ``redis-server`` on a free loopback port, with no persistence.

    ``stop()``/``start()`` keep the port so clients can reconnect to the same address, which is
    what the fault tests need (Redis killed and restarted while consumers wait). With ``tls``
    it listens only for TLS on that port and :attr:`url` is ``rediss://``.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        tls: RedisTLS | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        #: more redis-server options, after the defaults (e.g. ``--appendonly yes``: last wins)
        self.extra_args = tuple(extra_args)
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                if self.tls is None:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
                context = ssl.create_default_context(cafile=str(self.tls.ca_file))
                if self.tls.auth_clients == "yes":
                    context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
                with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"PING\r\n")
                    return tls.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run ./scripts/install")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                *(self.tls.args(self.port) if self.tls else ()),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_until(self._answers, 10):
            self.stop()
            pytest.fail(f"redis-server did not answer on port {self.port}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop(kill=True)
        self.start()


@contextlib.contextmanager
def redis_servers(
    factory: pytest.TempPathFactory, prefix: str, count: int
) -> Iterator[list[RedisProcess]]:
    """``count`` standalone redis-servers (shards), each in its own directory; stopped on exit."""
    servers = [RedisProcess(factory.mktemp(f"{prefix}{i}")) for i in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop(kill=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A private redis-server for one test."""
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the tests that only need *a* Redis (they flush their own prefix)."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def example_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses running the example project on a private SQLite file."""
    return example_environment(tmp_path)


def example_environment(directory: Path) -> dict[str, str]:
    """The environment of :func:`example_env`, with its files in ``directory``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env["DATABASE_URL"] = f"sqlite:///{directory / 'db.sqlite3'}"
    env["STATIC_ROOT"] = str(directory / "static")
    return env


@pytest.fixture
def start_stack(tmp_path: Path, example_env: dict[str, str]) -> Iterator[object]:
    """``start(*args)`` runs ``channels-scale up`` on the example; every stack stops at teardown."""
    started: list[RunningStack] = []

    def start(*args: str) -> RunningStack:
        stack = RunningStack(list(args), example_env, tmp_path / f"run{len(started)}", free_port())
        started.append(stack)
        stack.wait_up()
        return stack

    yield start
    for stack in started:
        stack.stop()
