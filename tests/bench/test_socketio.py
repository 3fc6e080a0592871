"""The ``socketio`` stack: real Node processes with the Redis adapter, real Redis and nginx.

Needs ``./scripts/install --socketio`` (``scripts/test`` runs it); without the packages the bench
exits 2 with the line that says so, which the last test checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed

from channels_scale.bench.command import execute
from channels_scale.bench.frames import decode_frame, encode_frame
from channels_scale.bench.scenarios import BenchConfig
from channels_scale.bench.socketio import MODULES_ENV, socketio_target
from channels_scale.bench.wire import SocketIoSession, wire_named
from channels_scale.cli import main
from channels_scale.stack.health import worker_health
from tests.conftest import scaled

Tiny = Callable[..., BenchConfig]


def test_the_session_speaks_engine_io_and_unwraps_the_event() -> None:
    session = SocketIoSession()
    assert session.receive(b'0{"sid":"a","pingInterval":25000}') == (None, b"40")
    assert not session.ready
    assert session.receive(b'40{"sid":"b"}') == (None, None)
    assert session.ready
    assert session.receive(b"2") == (None, b"3")
    assert session.pings == 1
    frame = encode_frame(1, 2, 3, 4)
    assert session.receive(session.wrap(frame)) == (frame, None)
    assert session.wrap(frame) == b'42["m",' + frame + b"]"
    # Another event is handed over whole: a token search still finds a payload in it.
    assert session.receive(b'42["other",1]') == (b'42["other",1]', None)


def test_the_wire_chooses_the_url() -> None:
    assert wire_named("websocket").url("ws://h:1/", "/ws/broadcast/r/", "r") == (
        "ws://h:1/ws/broadcast/r/"
    )
    assert wire_named("socketio").url("ws://h:1", "/ws/broadcast/a b/", "a b") == (
        "ws://h:1/socket.io/?EIO=4&transport=websocket&room=a%20b"
    )
    with pytest.raises(ValueError, match="unknown wire 'mqtt'"):
        wire_named("mqtt")


async def _join(socket_path: Path, room: str) -> tuple[ClientConnection, SocketIoSession]:
    """A Socket.IO client on one Node process's own socket (not through nginx), joined to room."""
    ws = await unix_connect(
        str(socket_path),
        f"ws://localhost/socket.io/?EIO=4&transport=websocket&room={room}",
        compression=None,
        open_timeout=scaled(10),
    )
    session = SocketIoSession()
    while not session.ready:
        _, reply = session.receive(await asyncio.wait_for(ws.recv(decode=False), scaled(10)))
        if reply is not None:
            await ws.send(reply, text=True)
    return ws, session


async def _frames(ws: ClientConnection, session: SocketIoSession, count: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < count:
        frame, reply = session.receive(await asyncio.wait_for(ws.recv(decode=False), scaled(10)))
        if reply is not None:
            await ws.send(reply, text=True)
        if frame is not None:
            got.append(frame)
    return got


async def test_a_frame_published_on_one_node_process_reaches_the_other(tmp_path: Path) -> None:
    with socketio_target(2, tmp_path) as running:
        # Two Node processes, each on its own socket, both metered.
        answers = [worker_health(path) for path in running.worker_sockets]
        pids = [answer["pid"] for answer in answers if answer is not None]
        assert len(set(pids)) == 2
        assert set(pids) <= set(running.pids)
        far, far_session = await _join(running.worker_sockets[0], "r1")
        near, near_session = await _join(running.worker_sockets[1], "r1")
        other, _ = await _join(running.worker_sockets[0], "r2")
        frames = [encode_frame(1, 7, seq, 1000 + seq) for seq in range(20)]
        for frame in frames:
            await near.send(near_session.wrap(frame), text=True)
        # Every frame, in order, byte for byte, in the other process and in the sender's own.
        assert await _frames(far, far_session, 20) == frames
        assert await _frames(near, near_session, 20) == frames
        assert [decode_frame(f)[2] for f in frames] == list(range(20))
        # Another room hears nothing of it.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(other.recv(), 0.3)
        for ws in (far, near, other):
            await ws.close()


async def test_the_client_answers_pings_and_a_silent_one_is_dropped(tmp_path: Path) -> None:
    with socketio_target(1, tmp_path, ping_interval_ms=100, ping_timeout_ms=200) as running:
        (path,) = running.worker_sockets
        ws, session = await _join(path, "r")
        silent, _ = await _join(path, "r")
        # Five pings answered: well past the 300 ms after which an unanswered ping closes it.
        while session.pings < 5:
            _, reply = session.receive(await asyncio.wait_for(ws.recv(decode=False), scaled(5)))
            if reply is not None:
                await ws.send(reply, text=True)
        frame = encode_frame(1, 1, 0, 0)
        await ws.send(session.wrap(frame), text=True)
        assert await _frames(ws, session, 1) == [frame]
        # The premise: a client that does not answer is disconnected by the server.
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(silent.recv(), scaled(5))
        await ws.close()


def test_fanout_on_socketio_loses_nothing_and_meters_node_by_role(tiny: Tiny) -> None:
    doc, _ = execute(
        tiny("fanout", stacks=["socketio"], workers=2, subs=6, msgs=60, rate=60.0), quiet=True
    )
    (record,) = doc["stacks"]
    assert record["ok"], record["error"]
    assert record["processes"] == 2
    assert record["server_pids"] == 4  # redis-server, 2 x node, the nginx master
    (phase,) = record["phases"]
    figures = phase["figures"]
    assert figures["sent"] == 60
    assert figures["expected"] == 6 * 60
    assert figures["deliveries"] == 6 * 60
    assert figures["lost"] == 0
    assert figures["duplicated"] == 0
    costs = figures["costs"]
    assert {"worker", "lb", "redis"} <= set(costs["cpu_by_role"])
    assert costs["cpu_by_role"]["worker"] > 0
    # The adapter publishes each broadcast once, whatever the audience.
    assert costs["redis_commands"]["publish"] == 60


def test_url_wire_socketio_measures_a_running_socketio_server(tmp_path: Path) -> None:
    """``--url`` at a Socket.IO server the bench did not start: ``--url-wire`` makes it work."""
    out = tmp_path / "out"
    with socketio_target(1, tmp_path) as running:
        argv = [
            "bench", "fanout", "--url", running.ws_url, "--subs", "4", "--msgs", "40",
            "--rate", "40", "--procs", "1", "--drain", "3", "--quiet", "--out", str(out),
        ]  # fmt: skip
        # The plain websocket wire asks for /ws/broadcast/<room>/, which Socket.IO refuses.
        assert main(argv) == 2
        assert not (out / "fanout.json").exists()
        assert main([*argv, "--url-wire", "socketio"]) == 0
    doc = json.loads((out / "fanout.json").read_text())
    assert "--url-wire socketio" in doc["command"]
    (record,) = doc["stacks"]
    assert record["ok"], record["error"]
    assert record["wire"] == "socketio"
    figures = record["phases"][0]["figures"]
    assert figures["sent"] == 40
    assert figures["deliveries"] == 4 * 40
    assert figures["lost"] == 0


def test_missing_npm_packages_exit_2_with_the_install_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "channels_scale.cli", "bench", "fanout", "--stacks",
         "ours,socketio", "--out", str(tmp_path / "out")],
        env={**os.environ, MODULES_ENV: str(tmp_path)},
        capture_output=True, text=True, timeout=scaled(60),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "./scripts/install --socketio" in lines[0]
    assert not (tmp_path / "out" / "fanout.json").exists()  # nothing ran: ours neither
