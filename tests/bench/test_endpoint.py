"""``bench --url --path --frame --origin --header``: any endpoint that fans a frame out to a room.

The endpoint under test is a Channels-tutorial-shaped chat (tests/bench/tutorial_app.py) under a
real uvicorn, driven by the bench's real client processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from channels_scale.bench.endpoint import (
    Endpoint,
    handshake_hint,
    parse_frame,
    parse_header,
    parse_origin,
    parse_path,
)
from channels_scale.bench.frames import FRAME_SIZE, FrameError
from channels_scale.cli import main
from channels_scale.net import free_port, port_in_use, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHAT_PATH = "/ws/chat/{room}/"
CHAT_FRAME = '{"message": "{payload}"}'


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_template_frame_is_padded_and_found_inside_a_reserialised_reply() -> None:
    endpoint = Endpoint(path=CHAT_PATH, frame=CHAT_FRAME)
    frame = endpoint.encode(3, 7, 41, 1_234_567_890_123)
    assert len(frame) == FRAME_SIZE
    message = json.loads(frame)["message"]
    reply = json.dumps({"user": "ann", "message": message, "room": "r"}).encode()
    assert endpoint.decode(reply) == (3, 7, 41, 1_234_567_890_123)
    with pytest.raises(FrameError):
        endpoint.decode(b'{"type": "presence", "who": ["ann"]}')
    assert endpoint.url("ws://127.0.0.1:8000", "lobby") == "ws://127.0.0.1:8000/ws/chat/lobby/"


def test_default_endpoint_is_the_broadcast_path_and_the_bench_frame() -> None:
    endpoint = Endpoint()
    frame = endpoint.encode(1, 2, 3, 4)
    assert frame.startswith(b'{"f":1,"p":2,"s":3,"t":4,')
    assert endpoint.decode(frame) == (1, 2, 3, 4)
    assert endpoint.url("ws://h:1", "r") == "ws://h:1/ws/broadcast/r/"


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_path, "ws/chat/{room}/", "must start with /"),
        (parse_path, "/ws/chat/", "must hold {room} once"),
        (parse_path, "/ws/{room}/?x=1", "plain path"),
        (parse_frame, '{"message": "hi"}', "must hold {payload} once"),
        (parse_header, "Cookie sessionid=1", "must look like Name:value"),
        (parse_header, "Sec-WebSocket-Key:abc", "set by the websocket handshake"),
        (parse_origin, "127.0.0.1:8000", "must look like http://"),
    ],
)
def test_bad_endpoint_options_are_refused(parse: object, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        parse(text)  # type: ignore[operator]


def test_hints_name_the_likely_cause() -> None:
    assert "Origin" in handshake_hint(403, "/ws/chat/x/")
    assert "--path" in handshake_hint(404, "/ws/chat/x/")
    assert "No route found" in handshake_hint(500, "/ws/chat/x/")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--path", CHAT_PATH], "go with --url"),
        (["--url", "ws://127.0.0.1:1", "--frame", "nothing"], "--frame: must hold {payload}"),
        (["--url", "ws://127.0.0.1:1", "--header", "nocolon"], "--header: must look like"),
        (["--url-wire", "socketio"], "go with --url"),
        (["--url", "ws://127.0.0.1:1", "--url-wire", "mqtt"], "--url-wire: unknown wire 'mqtt'"),
        (
            ["--url", "ws://127.0.0.1:1", "--url-wire", "socketio", "--path", CHAT_PATH],
            "--path does not apply to --url-wire socketio",
        ),
    ],
)
def test_bad_endpoint_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert _exit_code(["bench", "fanout", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tutorial chat under uvicorn on a free port; its ``ws://`` base URL."""
    port = free_port()
    log = (tmp_path_factory.mktemp("tutorial") / "uvicorn.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.bench.tutorial_app:application",
         "--port", str(port), "--no-access-log", "--lifespan", "off"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        if not wait_until(lambda: port_in_use("127.0.0.1", port) or proc.poll() is not None, 20):
            pytest.fail("uvicorn did not listen")
        assert proc.poll() is None, f"uvicorn exited; see {log.name}"
        yield f"ws://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _bench(url: str, out: Path, *options: str) -> int:
    return _exit_code(
        ["bench", "fanout", "--url", url, "--subs", "4", "--msgs", "50", "--rate", "50",
         "--procs", "1", "--drain", "3", "--quiet", "--out", str(out), *options]
    )  # fmt: skip


def test_bench_measures_the_tutorial_chat_by_payload(tutorial: str, tmp_path: Path) -> None:
    origin = tutorial.replace("ws://", "http://")
    code = _bench(
        tutorial, tmp_path, "--path", CHAT_PATH, "--frame", CHAT_FRAME, "--origin", origin,
        "--header", "Cookie:sessionid=secret-value",
    )  # fmt: skip
    assert code == 0
    doc = json.loads((tmp_path / "fanout.json").read_text())
    (record,) = doc["stacks"]
    (phase,) = record["phases"]
    f = phase["figures"]
    assert f["sent"] == 50
    assert f["expected"] == 4 * 50
    assert f["lost"] == 0
    assert f["duplicated"] == 0
    assert doc["config"]["path"] == CHAT_PATH
    assert f"--path '{CHAT_PATH}'" in doc["command"] and f"--origin {origin}" in doc["command"]
    # The cookie's value is a credential: it stays out of every file the bench writes.
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"secret-value" in p.read_bytes()]


def test_missing_origin_is_a_403_with_its_likely_cause(
    tutorial: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _bench(tutorial, tmp_path, "--path", CHAT_PATH, "--frame", CHAT_FRAME) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "HTTP 403" in err[0] and "--origin" in err[0]
    assert not (tmp_path / "fanout.json").exists()


def test_unrouted_path_names_the_path(
    tutorial: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    origin = tutorial.replace("ws://", "http://")
    code = _bench(tutorial, tmp_path, "--path", "/ws/nochat/{room}/", "--origin", origin)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "/ws/nochat/bench-probe-" in err[0] and "check --path" in err[0]
