"""The L4 load balancers' configs are sized like the HTTP ones and valid for the real programs."""

from __future__ import annotations

import os
from pathlib import Path

from channels_scale.stack.lbconfigs import nginx_stream_module, render_nginx_stream
from channels_scale.stack.limits import HEADROOM, RESERVED_FDS
from channels_scale.stack.options import StackOptions
from channels_scale.stack.preflight import find_binary
from tests.stack.test_configs import _layout, _nginx_t


def _stream_conf(tmp_path: Path, open_files: int, max_connections: int | None) -> str:
    """The nginx-stream config for 2 workers, checked by ``nginx -t``."""
    nginx = find_binary("nginx")
    assert nginx, "nginx is not installed: run ./scripts/install"
    layout = _layout(tmp_path)
    options = StackOptions(
        workers=2, port=18093, lb="nginx-stream", run_dir=layout.root,
        max_connections=max_connections,
    )  # fmt: skip
    text = render_nginx_stream(
        options, layout, open_files, run_as_root=True, module=nginx_stream_module(nginx)
    )
    _nginx_t(layout, text)
    return text


def test_max_connections_sizes_nginx_stream_past_one_process_limit(tmp_path: Path) -> None:
    """20,000 websockets through nginx-stream: 40,000 connections over several nginx workers."""
    text = _stream_conf(tmp_path, open_files=20_000, max_connections=20_000)
    workers = int(text.split("worker_processes ", 1)[1].split(";")[0])
    per_worker = int(text.split("worker_connections ", 1)[1].split(";")[0])
    assert "worker_rlimit_nofile 20000;" in text
    assert per_worker <= 20_000 - RESERVED_FDS
    assert workers * per_worker >= 2 * 20_000 * HEADROOM  # both sides of every websocket
    assert "backlog=4096 reuseport;" in text  # the kernel spreads connections over the workers


def test_nginx_stream_without_max_connections_runs_one_worker_per_core(tmp_path: Path) -> None:
    text = _stream_conf(tmp_path, open_files=4_096, max_connections=None)
    assert f"worker_processes {os.cpu_count()};" in text
    assert "worker_rlimit_nofile 4096;" in text
    assert f"worker_connections {4_096 - RESERVED_FDS};" in text
