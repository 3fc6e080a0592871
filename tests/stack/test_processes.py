"""Exact process identities: a reused pid is never signalled, a session is found without names."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import replace

from channels_scale.net import wait_until
from channels_scale.stack.processes import ProcessId

# A session leader whose child stays in its session (as supervisord's programs do).
LEADER = "import subprocess, sys, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"


def test_a_pid_with_another_start_time_is_not_signalled() -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        real = ProcessId.of(bystander.pid)
        assert real is not None and real.alive()
        stranger = replace(real, started=real.started - 1)  # the same number, another process
        assert not stranger.alive()
        stranger.signal(signal.SIGKILL)
        assert bystander.poll() is None and real.alive()
        assert stranger.session() == []
    finally:
        bystander.kill()
        bystander.wait()
    assert not real.alive()  # reaped: gone, whatever reuses the number next


def test_session_finds_children_and_outlives_its_leader() -> None:
    leader = subprocess.Popen([sys.executable, "-c", LEADER], start_new_session=True)
    outsider = subprocess.Popen(["sleep", "300"])
    try:
        identity = ProcessId.of(leader.pid)
        assert identity is not None
        assert wait_until(lambda: len(identity.session()) == 2, 10)
        child = next(p for p in identity.session() if p != identity)
        leader.kill()
        leader.wait()
        assert not identity.alive()
        # The orphaned child is still found through the session its dead leader led.
        assert identity.session() == [child]
        for process in identity.session():
            process.signal(signal.SIGKILL)
        assert wait_until(lambda: not child.alive(), 10)
        assert outsider.poll() is None, "a process outside the session was signalled"
    finally:
        outsider.kill()
        outsider.wait()
        leader.kill()
        leader.wait()
