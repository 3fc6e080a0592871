"""deploy/supervisor/: parsed by supervisor's own ``ServerOptions``, as supervisord would.

The file is included from a minimal main config, as /etc/supervisor/supervisord.conf does. Two
things are replaced in the copy under test because supervisor checks them against this machine:
``user=channels-scale`` (the user does not exist here) and the log directory.
"""

from __future__ import annotations

import getpass
import shlex
import signal
from pathlib import Path
from typing import Any

from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from tests.deploy.deployfiles import WORKERS, read, socket_path, uvicorn_args

LOG_DIR = "/var/log/supervisor/"


def _process_configs(tmp_path: Path) -> list[Any]:
    text = read("supervisor/channels-scale.conf")
    assert "\nuser=channels-scale\n" in text
    assert LOG_DIR in text
    included = tmp_path / "conf.d" / "channels-scale.conf"
    included.parent.mkdir()
    included.write_text(
        text.replace("user=channels-scale", f"user={getpass.getuser()}").replace(
            LOG_DIR, f"{tmp_path}/"
        )
    )
    main = tmp_path / "supervisord.conf"
    main.write_text(
        "[supervisord]\n"
        f"logfile={tmp_path}/supervisord.log\n"
        f"pidfile={tmp_path}/supervisord.pid\n"
        "[include]\n"
        f"files={included.parent}/*.conf\n"
    )
    options = ServerOptions()
    options.configfile = str(main)
    options.process_config(do_usage=False)
    groups = options.process_group_configs
    assert [group.name for group in groups] == ["channels-scale"]
    return list(groups[0].process_configs)


def test_supervisor_expands_one_process_per_worker(tmp_path: Path) -> None:
    processes = _process_configs(tmp_path)
    assert [p.name for p in processes] == [f"worker-{i}" for i in range(WORKERS)]
    for number, process in enumerate(processes):
        args = uvicorn_args(shlex.split(process.command))
        assert args[args.index("--uds") + 1] == socket_path(number)
        assert process.environment["CHANNELS_SCALE_WORKER_ID"] == str(number)
        assert process.stdout_logfile == f"{tmp_path}/channels-scale-worker-{number}.log"


def test_supervisor_restart_and_stop_settings(tmp_path: Path) -> None:
    process = _process_configs(tmp_path)[0]
    assert process.autorestart is RestartUnconditionally
    assert process.stopsignal == signal.SIGTERM
    assert process.stopasgroup and process.killasgroup
    args = uvicorn_args(shlex.split(process.command))
    graceful = float(args[args.index("--timeout-graceful-shutdown") + 1])
    assert graceful + 5 <= process.stopwaitsecs <= 60
    assert process.directory == "/srv/channels-scale/app"
    assert process.environment["STATIC_ROOT"] == "/srv/channels-scale/static"


def test_tmpfiles_creates_the_socket_directory() -> None:
    lines = [
        line.split()
        for line in read("supervisor/channels-scale.tmpfiles.conf").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == [["d", "/run/channels-scale", "0750", "channels-scale", "channels-scale", "-"]]
