"""Machines on one Linux box: network namespaces on a private bridge, for the multi-host test.

A :class:`Lan` is a bridge in a namespace of its own; each :class:`Machine` is a namespace with a
loopback and one ``eth0`` whose veth peer is enslaved to that bridge. Every veth pair is created
from inside the bridge's namespace with its other end placed straight into the member
(``ip -n BRIDGE link add … type veth peer name eth0 netns MEMBER``), so no link ever exists in
the root namespace and the root namespace's addresses and routes are never touched. Names carry
the test's pid (``cs-<pid>-<role>``), so two runs, or a run and the leftovers of a killed one,
never share a namespace. :meth:`Lan.close` deletes exactly the namespaces it created, which
deletes their links with them.

Processes run in a machine through ``ip netns exec`` (which ``exec``s the command: its pid is
the command's), each in a session of its own, and :meth:`NsProcess.stop` signals exactly that
process group.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from channels_scale.net import timeout_factor

#: Subnets the LAN may use, first unused one wins (RFC 1918, rarely configured by hand).
CANDIDATE_SUBNETS = tuple(ipaddress.ip_network(f"10.77.{n}.0/24") for n in range(0, 250, 10))


def unavailable() -> str | None:
    """Why namespaces cannot be made here (the test's skip reason), or None."""
    if os.geteuid() != 0:
        return "needs root: creates network namespaces and veth pairs (ip netns)"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2) for network namespaces"
    return None


def ip(*args: str) -> str:
    """Run ``ip ARGS``; its output. A failure raises with ip's own message."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=10 * timeout_factor(), check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def unused_subnet() -> ipaddress.IPv4Network:
    """The first candidate overlapping no address or route of the root namespace.

    The LAN is not connected to the root namespace, so an overlap could not misroute anything;
    avoiding one keeps addresses in the logs unambiguous for whoever reads them.
    """
    taken = []
    for line in (ip("-4", "-o", "addr") + ip("-4", "route")).splitlines():
        for word in line.split():
            try:
                taken.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                continue
    for subnet in CANDIDATE_SUBNETS:
        if not any(subnet.overlaps(t) for t in taken if t.prefixlen > 0):
            return subnet
    raise RuntimeError(f"every candidate subnet overlaps the root namespace's: {taken}")


@dataclass(frozen=True)
class Machine:
    """A namespace with one address on the LAN."""

    namespace: str
    address: str

    def command(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]

    def run(
        self, args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` in this machine to the end (output captured, never raises on exit code)."""
        return subprocess.run(
            self.command(args), capture_output=True, text=True, env=env, check=False,
            timeout=timeout * timeout_factor(),
        )  # fmt: skip

    def start(
        self,
        args: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        talk: bool = False,
    ) -> NsProcess:
        """Start ``args`` in this machine in a session of its own, its output appended to
        ``log``; with ``talk``, stdin and stdout are pipes instead (stderr still goes to ``log``).
        """
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self.command(args), env=env, cwd=cwd, start_new_session=True,
                stdin=subprocess.PIPE if talk else subprocess.DEVNULL,
                stdout=subprocess.PIPE if talk else out, stderr=out, text=True,
            )  # fmt: skip
        return NsProcess(proc, log)


@dataclass
class NsProcess:
    """A process started in a machine; it leads its own process group."""

    proc: subprocess.Popen[str]
    log: Path

    def stop(self) -> None:
        """SIGTERM its process group, SIGKILL after a bounded wait; reaped either way."""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signum)
            try:
                self.proc.wait(timeout=5 * timeout_factor())
                break
            except subprocess.TimeoutExpired:
                continue
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class Lan:
    """A bridge and the machines on it; :meth:`close` removes exactly what was made."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.subnet = unused_subnet()
        self._hosts = self.subnet.hosts()
        self.created: list[str] = []
        try:
            self.bridge_ns = self._namespace("lan")
            ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def _namespace(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        ip("netns", "add", name)
        self.created.append(name)  # before anything else can fail: close() deletes it
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def machine(self, role: str) -> Machine:
        """A new namespace ``<prefix>-<role>`` with the next address of the subnet."""
        name = self._namespace(role)
        address = str(next(self._hosts))
        port = f"v{len(self.created) - 1}"  # the bridge side; names are local to its namespace
        ip("-n", self.bridge_ns, "link", "add", port, "type", "veth",
           "peer", "name", "eth0", "netns", name)  # fmt: skip
        ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        ip("-n", name, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        return Machine(name, address)

    def close(self) -> list[str]:
        """Delete the namespaces made here (links go with them); the names that failed."""
        failed = []
        while self.created:
            name = self.created.pop()
            try:
                ip("netns", "del", name)
            except RuntimeError:
                failed.append(name)
        return failed
