"""What runs on the multi-host test's machines: Redis (one server or a cluster) and app hosts.

- :class:`NsRedis`: ``redis-server`` processes in one machine, listening on its LAN address;
  ``masters=1`` is a standalone server (``redis://``), more is a Redis Cluster of that many
  masters and no replicas (``redis+cluster://``), made as tests/cluster/conftest.py makes one
  (``--cluster-enabled``, ``redis-cli --cluster create``) with ``cluster-announce-ip`` set to the
  machine's address, so nodes tell clients on other machines where to go.
- :class:`AppHost`: ``channels-scale up --detach`` run in a machine on its address (its own
  supervisor, workers and nginx), stopped as ``channels-scale down`` stops it; every process of
  it is recorded when it is up and, should the stop leave any, killed by exact identity.

Ports are fixed: each machine has a port space of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from channels_scale.exceptions import ConfigError
from channels_scale.net import timeout_factor, wait_until
from channels_scale.stack.control import stop_running, supervisor_call, supervisor_processes
from channels_scale.stack.options import RunLayout
from channels_scale.stack.processes import ProcessId
from tests.conftest import EXAMPLE, ROOT
from tests.multihost.netns import Machine, NsProcess
from tests.stackrunner import CLI, stack_members

REDIS_PORT = 6379
NODE_TIMEOUT_MS = 2000
APP_PORT = 8000


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run ./scripts/install")
    return found


class NsRedis:
    """``masters`` redis-server processes in ``machine`` (see module doc); :attr:`url`."""

    def __init__(self, machine: Machine, workdir: Path, masters: int = 1) -> None:
        self.machine = machine
        self.workdir = workdir
        self.ports = [REDIS_PORT + i for i in range(masters)]
        self.processes: list[NsProcess] = []

    @property
    def cluster(self) -> bool:
        return len(self.ports) > 1

    @property
    def url(self) -> str:
        if self.cluster:
            seeds = ",".join(f"{self.machine.address}:{p}" for p in self.ports)
            return f"redis+cluster://{seeds}"
        return f"redis://{self.machine.address}:{self.ports[0]}/0"

    def _cli(self, port: int, *args: str) -> str:
        done = self.machine.run(
            [_binary("redis-cli"), "-h", self.machine.address, "-p", str(port), *args], timeout=10
        )
        return done.stdout

    def start(self) -> None:
        server = _binary("redis-server")
        for port in self.ports:
            directory = self.workdir / f"redis-{port}"
            directory.mkdir()
            # Not loopback, so protected mode would refuse the other machines: the LAN is
            # private to this test (no route leads into it).
            args = [
                server, "--port", str(port), "--bind", self.machine.address,
                "--protected-mode", "no", "--save", "", "--appendonly", "no",
                "--dir", str(directory), "--daemonize", "no", "--loglevel", "warning",
            ]  # fmt: skip
            if self.cluster:
                args += [
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(directory / "nodes.conf"),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--cluster-announce-ip", self.machine.address,
                ]  # fmt: skip
            self.processes.append(self.machine.start(args, log=directory / "redis.log"))
        for port in self.ports:
            if not wait_until(lambda p=port: self._cli(p, "PING").strip() == "PONG", 10, 0.1):
                raise RuntimeError(f"redis-server on {self.machine.address}:{port} did not answer")
        if self.cluster:
            self._create_cluster()

    def _create_cluster(self) -> None:
        nodes = [f"{self.machine.address}:{p}" for p in self.ports]
        done = self.machine.run(
            [_binary("redis-cli"), "--cluster", "create", *nodes, "--cluster-yes"], timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]}")

        def healthy() -> bool:
            return all("cluster_state:ok" in self._cli(p, "CLUSTER", "INFO") for p in self.ports)

        if not wait_until(healthy, 30, 0.2):
            raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()


class AppHost:
    """``channels-scale up --detach`` in ``machine``: the bundled example on its address."""

    def __init__(self, name: str, machine: Machine, run_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.machine = machine
        self.layout = RunLayout.of(run_dir)
        self.env = env
        self.up_output = ""
        #: every process of the stack once it is up (the fallback stop kills what is left)
        self.members: list[ProcessId] = []

    @property
    def ws_url(self) -> str:
        return f"ws://{self.machine.address}:{APP_PORT}"

    def up(self, redis_url: str, workers: int) -> None:
        """Run ``up --detach`` in the machine; raise with its output when it fails."""
        args = [
            CLI, "up", "--detach", "--workers", str(workers), "--host", self.machine.address,
            "--port", str(APP_PORT), "--redis", redis_url, "--run-dir", str(self.layout.root),
            "--no-collectstatic",  # nobody asks for a static file here
        ]  # fmt: skip
        done = self.machine.run(args, env=self.env, timeout=120)
        self.up_output = done.stdout + done.stderr
        if done.returncode != 0:
            raise RuntimeError(f"`channels-scale up` on {self.name} failed:\n{self.up_output}")
        self.members = stack_members(self.layout.root)

    def workers(self) -> list[ProcessId]:
        found = []
        for info in supervisor_processes(self.layout) or []:
            if str(info["name"]).startswith("worker-") and info.get("pid"):
                process = ProcessId.of(int(info["pid"]))
                if process is not None:
                    found.append(process)
        return found

    def kill_workers(self) -> list[ProcessId]:
        """The host's app dies: SIGKILL supervisord (so nothing restarts them), then every
        worker, by exact identity; nginx stays, answering 502. Returns the workers killed."""
        workers = self.workers()
        supervisord = ProcessId.of(int(supervisor_call(self.layout, "getPID")))
        assert supervisord is not None and len(workers) > 0
        supervisord.signal(signal.SIGKILL)
        for worker in workers:
            worker.signal(signal.SIGKILL)
        return workers

    def down(self) -> None:
        """What ``channels-scale down`` does (supervisord found by its socket, else by
        ``stack.json``; its session stopped), run here to spare a Python start per host; then
        SIGKILL whatever recorded member still lives."""
        with contextlib.suppress(ConfigError):  # no stack there: up failed before starting it
            stop_running(self.layout)
        for member in self.members:
            member.signal(signal.SIGKILL)

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every log of the stack, for a failure message."""
        parts = [f"--- {self.name}: up's output ---\n{self.up_output[-3000:]}"]
        for log in sorted(self.layout.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {self.name}: {log.name} ---\n" + "\n".join(text))
        return "\n".join(parts)


def host_environment(data: Path, allowed_hosts: list[str], secret_key: str) -> dict[str, str]:
    """The environment of every app host: the example's settings on one shared SQLite file.

    Like machines behind one name: one ``SECRET_KEY`` (a token issued once opens either host),
    one database, and both addresses in ``ALLOWED_HOSTS`` (a client that moves to the other host
    keeps its token; the example reads ``ALLOWED_HOSTS`` from the environment).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), str(ROOT)])
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env["DATABASE_URL"] = f"sqlite:///{data / 'db.sqlite3'}"
    env["STATIC_ROOT"] = str(data / "static")
    env["ALLOWED_HOSTS"] = ",".join(allowed_hosts)
    env["SECRET_KEY"] = secret_key
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


PREPARE = """
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from channels_scale.auth import issue_token
call_command("migrate", "--noinput", verbosity=0)
call_command("ensure_demo_user")
print(issue_token(get_user_model().objects.get(username="demo").pk, "chat", ttl=600))
"""


def prepare_example(env: dict[str, str]) -> str:
    """Tables and demo users in the shared database; a ``chat`` token of user ``demo``."""
    done = subprocess.run(
        [sys.executable, "-c", PREPARE], env=env, capture_output=True, text=True, check=False,
        timeout=120 * timeout_factor(),
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"preparing the example failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]
