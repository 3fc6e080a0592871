"""``channels-scale restart [--rolling]``: restart a running stack's workers.

Rolling (``--rolling``), one worker at a time:

1. the load balancer stops sending it new connections (HAProxy: ``set server workers/worker-N
   state drain`` on its stats socket; nginx: its ``server`` line gets ``down`` and nginx reloads
   — existing tunnels stay on the old nginx workers, new ones go to the other servers; direct:
   the worker closes its listener on the shared port, and nginx's HTTP server line goes down);
2. ``POST /drainz`` marks the worker draining (its ``/readyz`` answers 503) and closes its
   websockets with 1012 (service restart) in batches of at most 1/N of all the stack's
   websockets, waiting for each batch to reconnect elsewhere before the next: clients that
   resume (``client.js``) come back on the other workers and get what they missed from history;
3. supervisor stops it (uvicorn closes anything left with 1012 on SIGTERM) and starts it again;
4. once its ``/readyz`` answers 200 (new pid), the load balancer sends it connections again.

Without ``--rolling`` every worker is stopped and started at once (every client reconnects).
Only the stack's own processes are touched, through supervisor and the load balancer's own
controls.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from channels_scale.exceptions import ConfigError, StackError
from channels_scale.net import timeout_factor
from channels_scale.stack.health import haproxy_servers_up, worker_health
from channels_scale.stack.lbconfigs import lb_program
from channels_scale.stack.options import RunLayout
from channels_scale.stack.processes import children_of
from channels_scale.stack.readiness import worker_request

#: how long a shed batch may take to reconnect elsewhere before the next batch is closed
RECONNECT_WAIT_S = 5.0
READY_WAIT_S = 60.0


def control_token_path(layout: RunLayout) -> Path:
    return layout.root / "control.token"


def write_control_token(layout: RunLayout) -> None:
    """A fresh token for ``POST /drainz`` (mode 600: only the stack's user may drain)."""
    path = control_token_path(layout)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(16))


@dataclass(frozen=True)
class WorkerRestart:
    """What restarting one worker took."""

    worker: int
    seconds: float
    old_pid: int
    new_pid: int
    shed: int


def nginx_with_server_down(conf: str, socket_path: Path, down: bool) -> str:
    """``nginx.conf`` with the ``server`` line of ``socket_path`` marked ``down`` or not (pure)."""
    pattern = re.compile(
        rf"^(\s*server unix:{re.escape(str(socket_path))}\b[^;\n]*?)( down)?;$", re.M
    )
    if not pattern.search(conf):
        raise ValueError(f"no server line for {socket_path} in nginx.conf")
    return pattern.sub(lambda m: m.group(1) + (" down;" if down else ";"), conf)


class _Supervisor:
    def __init__(self, layout: RunLayout) -> None:
        from channels_scale.stack.control import supervisor_processes

        if supervisor_processes(layout) is None:
            raise ConfigError(
                f"no stack is running in {layout.root}: pass the --run-dir given to up"
            )
        self.layout = layout

    def call(self, method: str, *args: Any) -> Any:
        from channels_scale.stack.control import supervisor_call

        return supervisor_call(self.layout, method, *args)

    def pid(self, name: str) -> int:
        return int(self.call("getProcessInfo", name)["pid"])


class _LoadBalancer:
    """Take one worker out of the load balancer's rotation and put it back."""

    def __init__(self, layout: RunLayout, lb: str, supervisor: _Supervisor) -> None:
        self.layout, self.lb, self.supervisor = layout, lb, supervisor

    def set_enabled(self, worker: int, enabled: bool) -> None:
        if self.lb == "direct" and not enabled:
            # Its first drain call closes its listener on the shared port (stack/reuseport.py):
            # the kernel then hands new connections to the other workers only. nginx (HTTP
            # only in this mode) takes it out below; the restarted process rejoins by itself.
            _drain(self.layout, worker, 0)
        if lb_program(self.lb) == "haproxy":
            state = "ready" if enabled else "drain"
            answer = self._haproxy(f"set server workers/worker-{worker} state {state}")
            if answer.strip():
                raise StackError(f"HAProxy refused to {state} worker-{worker}: {answer.strip()}")
            if enabled:
                self._wait_haproxy_up(worker)
            return
        conf = self.layout.nginx_conf
        conf.write_text(
            nginx_with_server_down(conf.read_text(), self.layout.worker_socket(worker), not enabled)
        )
        self._nginx_reload()

    def _wait_haproxy_up(self, worker: int) -> None:
        """HAProxy's health checks marked the stopped worker down: wait until a check passes,
        or the next worker's clients would have one server fewer to go to."""
        deadline = time.monotonic() + 10 * timeout_factor()
        while time.monotonic() < deadline:
            if haproxy_servers_up(self.layout.haproxy_socket).get(f"worker-{worker}"):
                return
            time.sleep(0.05)
        raise StackError(f"HAProxy did not see worker-{worker} up again within 10 s")

    def _haproxy(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.layout.haproxy_socket))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def _nginx_reload(self) -> None:
        """Check the config, HUP nginx's master (through supervisor), wait for new workers."""
        from channels_scale.stack.runner import find_binary

        nginx = find_binary("nginx")
        if nginx is None:
            raise ConfigError("nginx is not installed")
        checked = subprocess.run(
            [nginx, "-t", "-q", "-p", str(self.layout.nginx_dir), "-c", str(self.layout.nginx_conf),
             "-e", "stderr"],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip
        if checked.returncode != 0:
            raise StackError("nginx.conf is invalid: " + checked.stderr.decode(errors="replace"))
        master = self.supervisor.pid("lb")
        before = set(children_of(master))
        self.supervisor.call("signalProcess", "lb", "HUP")
        # nginx applies a reload by starting new worker processes and telling the old ones to
        # stop accepting (they then show "is shutting down" and finish their open tunnels): the
        # config is live once a new worker runs and no old one still accepts.
        deadline = time.monotonic() + 10 * timeout_factor()
        while time.monotonic() < deadline:
            children = {pid: _cmdline(pid) for pid in children_of(master)}
            accepting = {pid for pid, cmd in children.items() if cmd == "nginx: worker process"}
            if accepting and not accepting & before:
                return
            time.sleep(0.05)
        raise StackError("nginx did not reload within 10 s")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _open_websockets(layout: RunLayout, workers: int) -> list[int]:
    counts = []
    for worker in range(workers):
        health = worker_health(layout.worker_socket(worker), timeout=2)
        counts.append(int(health["websockets"]) if health else 0)
    return counts


def _drain(layout: RunLayout, worker: int, close: int) -> dict[str, Any]:
    token = control_token_path(layout).read_text().strip()
    answer = worker_request(
        layout.worker_socket(worker), f"/drainz?close={close}", method="POST",
        headers={"X-Channels-Scale-Token": token},
    )  # fmt: skip
    if answer is None or answer[0] != 200:
        raise StackError(f"worker-{worker} refused to drain: {answer}")
    return answer[1]


def _shed(layout: RunLayout, worker: int, workers: int) -> int:
    """Close the worker's websockets (1012) in batches of at most 1/N of the stack's websockets,
    each batch given time to reconnect to the other workers; how many were closed."""
    counts = _open_websockets(layout, workers)
    batch = max(1, sum(counts) // workers)
    _drain(layout, worker, 0)
    shed = 0
    while (mine := _open_websockets(layout, workers)[worker]) > 0:
        others = sum(_open_websockets(layout, workers)) - mine
        closed = int(_drain(layout, worker, min(batch, mine))["closed"])
        shed += closed
        deadline = time.monotonic() + RECONNECT_WAIT_S * timeout_factor()
        while time.monotonic() < deadline:
            now = _open_websockets(layout, workers)
            if sum(now) - now[worker] >= others + closed:
                break
            time.sleep(0.05)
        if closed == 0:
            break
    return shed


def _wait_ready(layout: RunLayout, worker: int, old_pid: int) -> int:
    deadline = time.monotonic() + READY_WAIT_S * timeout_factor()
    while time.monotonic() < deadline:
        answer = worker_request(layout.worker_socket(worker), "/readyz", timeout=3)
        if answer is not None and answer[0] == 200 and answer[1].get("pid") != old_pid:
            return int(answer[1]["pid"])
        time.sleep(0.1)
    raise StackError(f"worker-{worker} was not ready {READY_WAIT_S:.0f} s after its restart")


def restart_worker(
    layout: RunLayout, supervisor: _Supervisor, lb: _LoadBalancer, worker: int, workers: int
) -> WorkerRestart:
    started = time.monotonic()
    name = f"worker:worker-{worker}"
    old_pid = supervisor.pid(name)
    lb.set_enabled(worker, False)
    try:
        shed = _shed(layout, worker, workers)
        supervisor.call("stopProcess", name, True)
        # A server that died hard leaves its socket file behind; binding would then fail.
        layout.worker_socket(worker).unlink(missing_ok=True)
        supervisor.call("startProcess", name, True)
        new_pid = _wait_ready(layout, worker, old_pid)
    finally:
        lb.set_enabled(worker, True)
    return WorkerRestart(worker, time.monotonic() - started, old_pid, new_pid, shed)


def restart(
    run_dir: Path, rolling: bool, report: Callable[[str], None] = print
) -> list[WorkerRestart]:
    """Restart every worker of the stack in ``run_dir`` (see the module docstring)."""
    layout = RunLayout.of(run_dir)
    if not layout.state_file.exists():
        raise ConfigError(f"no stack was started in {layout.root}: pass the --run-dir given to up")
    state = json.loads(layout.state_file.read_text())
    workers = int(state["workers"])
    supervisor = _Supervisor(layout)
    if not rolling:
        started = time.monotonic()
        old = [supervisor.pid(f"worker:worker-{w}") for w in range(workers)]
        supervisor.call("stopProcessGroup", "worker", True)
        for worker in range(workers):
            layout.worker_socket(worker).unlink(missing_ok=True)
        supervisor.call("startProcessGroup", "worker", True)
        done = [
            WorkerRestart(w, time.monotonic() - started, old[w], _wait_ready(layout, w, old[w]), 0)
            for w in range(workers)
        ]
        report(f"restarted {workers} workers at once in {time.monotonic() - started:.1f} s")
        return done
    lb = _LoadBalancer(layout, state["options"]["lb"], supervisor)
    done = []
    for worker in range(workers):
        step = restart_worker(layout, supervisor, lb, worker, workers)
        report(
            f"worker-{worker}: restarted in {step.seconds:.1f} s (pid {step.old_pid} -> "
            f"{step.new_pid}, {step.shed} websockets moved to the other workers)"
        )
        done.append(step)
    return done


def cmd_restart(args: argparse.Namespace) -> int:
    restart(args.run_dir, args.rolling)
    return 0


def register(commands: Any) -> None:
    """The ``restart`` subcommand (added to the CLI like ``bench``)."""
    parser = commands.add_parser(
        "restart",
        help="restart the workers of a running stack (--rolling: one at a time, without loss)",
        description="Restart the workers of the stack running in --run-dir. --rolling: one at a "
        "time, taken out of the load balancer, its websockets closed with 1012 so clients "
        "resume on the other workers, back in once its /readyz answers.",
    )
    parser.add_argument("--run-dir", type=Path, default=Path(".run/channels-scale"))
    parser.add_argument("--rolling", action="store_true", help="one worker at a time")
    parser.set_defaults(func=cmd_restart)
