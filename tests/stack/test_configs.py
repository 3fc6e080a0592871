"""Generated configs are valid for the real programs (``nginx -t``, ``haproxy -c``, supervisor)."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import pytest

from channels_scale.stack.configs import Binaries, render_haproxy, render_nginx, render_supervisord
from channels_scale.stack.limits import HEADROOM, RESERVED_FDS, Limits, open_files_for
from channels_scale.stack.options import RunLayout, StackOptions
from channels_scale.stack.preflight import find_binary


def _layout(tmp_path: Path) -> RunLayout:
    layout = RunLayout.of(tmp_path / "run")
    for path in (layout.sockets, layout.logs, layout.nginx_dir / "tmp"):
        path.mkdir(parents=True)
    return layout


def _binaries() -> Binaries:
    supervisord = find_binary("supervisord")
    assert supervisord is not None
    return Binaries(supervisord, find_binary("redis-server"), find_binary("nginx"), None)


@pytest.mark.parametrize("static", [True, False])
def test_nginx_config_passes_nginx_t(tmp_path: Path, static: bool) -> None:
    layout = _layout(tmp_path)
    options = StackOptions(workers=3, port=18080, run_dir=layout.root)
    static_root = tmp_path / "static"
    static_root.mkdir()
    text = render_nginx(
        options, layout, "/static/" if static else None, static_root if static else None,
        open_files=20000, run_as_root=True,
    )  # fmt: skip
    assert text.count("server unix:") == 3
    assert "least_conn;" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert ("alias " + str(static_root)) in text if static else "alias" not in text
    for mime in ("image/jpeg jpg jpeg;", "font/woff2 woff2;", "text/plain txt;"):
        assert mime in text
    _nginx_t(layout, text)


def test_haproxy_config_passes_haproxy_c(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    options = StackOptions(workers=2, port=18081, lb="haproxy", run_dir=layout.root)
    text = render_haproxy(options, layout, open_files=20000)
    assert "balance leastconn" in text
    assert "timeout tunnel" in text
    assert text.count("check inter") == 2
    assert "option forwardfor" in text
    layout.haproxy_cfg.write_text(text)
    haproxy = find_binary("haproxy")
    assert haproxy, "haproxy is not installed: run ./scripts/install"
    done = subprocess.run(
        [haproxy, "-c", "-f", str(layout.haproxy_cfg)], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_supervisord_config_has_every_program(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    options = StackOptions(workers=4, port=18082, run_dir=layout.root, layer="channels_redis")
    text = render_supervisord(
        options, layout, _binaries(), "redis://127.0.0.1:7000/0", 7000,
        serve_static=False, open_files=20000,
    )  # fmt: skip
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    assert {"program:redis", "program:worker", "program:lb"} <= set(parser.sections())
    worker = parser["program:worker"]
    assert worker["numprocs"] == "4"
    assert "--uds" in worker["command"] and "worker-%(process_num)d.sock" in worker["command"]
    assert 'CHANNELS_SCALE_WORKER_ID="%(process_num)d"' in worker["environment"]
    assert 'CHANNELS_SCALE_LAYER="channels_redis"' in worker["environment"]
    assert worker["autorestart"] == "true"
    # no line per accepted websocket through supervisord's pipe (docs/operations.md)
    assert "--log-level warning" in worker["command"]


def test_supervisord_config_without_private_redis(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    options = StackOptions(workers=1, run_dir=layout.root, redis_url="redis://10.0.0.1:6379/0")
    text = render_supervisord(
        options, layout, _binaries(), "redis://10.0.0.1:6379/0", None,
        serve_static=True, open_files=1024,
    )  # fmt: skip
    assert "[program:redis]" not in text
    assert 'CHANNELS_SCALE_SERVE_STATIC="1"' in text


def _nginx_t(layout: RunLayout, text: str) -> None:
    layout.nginx_conf.write_text(text)
    nginx = find_binary("nginx")
    assert nginx, "nginx is not installed: run ./scripts/install"
    done = subprocess.run(
        [nginx, "-t", "-p", str(layout.nginx_dir), "-c", str(layout.nginx_conf), "-e", "stderr"],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()


def test_max_connections_sizes_nginx_past_one_process_limit(tmp_path: Path) -> None:
    """20,000 websockets are 40,000 nginx connections: more than one worker's 20,000 files."""
    layout = _layout(tmp_path)
    options = StackOptions(workers=2, port=18083, run_dir=layout.root, max_connections=20_000)
    text = render_nginx(options, layout, None, None, open_files=20_000, run_as_root=True)
    workers = int(text.split("worker_processes ", 1)[1].split(";")[0])
    per_worker = int(text.split("worker_connections ", 1)[1].split(";")[0])
    assert "worker_rlimit_nofile 20000;" in text
    assert per_worker <= 20_000 - RESERVED_FDS
    assert workers * per_worker >= 2 * 20_000 * HEADROOM  # both sides of every websocket
    assert "reuseport" in text  # the kernel spreads connections evenly over those workers
    _nginx_t(layout, text)


def test_without_max_connections_nginx_runs_one_worker_per_core(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    options = StackOptions(workers=2, port=18084, run_dir=layout.root)
    text = render_nginx(options, layout, None, None, open_files=20_000, run_as_root=True)
    assert f"worker_processes {os.cpu_count()};" in text
    _nginx_t(layout, text)


def test_supervisord_minfds_and_haproxy_maxconn_follow_the_open_files(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    options = StackOptions(workers=2, run_dir=layout.root, max_connections=5_000)
    text = render_supervisord(
        options, layout, _binaries(), "redis://127.0.0.1:7000/0", 7000,
        serve_static=False, open_files=12_000,
    )  # fmt: skip
    assert "minfds=12000" in text
    options = StackOptions(workers=2, run_dir=layout.root, lb="haproxy", max_connections=5_000)
    haproxy = render_haproxy(options, layout, open_files=12_000)
    assert f"maxconn {(12_000 - RESERVED_FDS) // 2}" in haproxy


@pytest.mark.parametrize(
    ("connections", "soft", "hard", "expected"),
    [
        (None, 1024, 524_288, 1024),  # not sized: the soft limit, as before
        (20_000, 1024, 524_288, 50_256),  # enough for one process, not all of a huge hard limit
        (20_000, 20_000, 20_000, 20_000),  # capped by the hard limit: more nginx workers instead
    ],
)
def test_open_files_for(connections: int | None, soft: int, hard: int, expected: int) -> None:
    assert open_files_for(connections, soft, hard) == expected


def test_limits_refuse_what_one_process_cannot_hold() -> None:
    limits = Limits(20_000, 20_000)
    assert limits.problems("nginx", workers=2) == []
    (haproxy,) = limits.problems("haproxy", workers=2)
    assert "HAProxy (one process) needs 40,256 open files" in haproxy
    (worker,) = limits.problems("nginx", workers=1)
    assert "add --workers" in worker
    assert Limits(None, 1024).problems("haproxy", workers=1) == []
