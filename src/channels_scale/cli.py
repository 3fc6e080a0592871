"""The ``channels-scale`` command.

Exit codes: 0 success; 1 the stack failed at run time; 2 bad input (an unknown flag or value, a
port in use, a missing program, a Redis that does not answer, an app that cannot be served, a run
directory already in use, ``down`` where nothing runs): one line on stderr says what is wrong and
how to fix it, nothing is left running, and nothing already running is touched.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from channels_scale import __version__, extras
from channels_scale.argtypes import port_number, positive_int
from channels_scale.exceptions import ConfigError, StackError
from channels_scale.settings import LAYERS
from channels_scale.stack.health import worker_health
from channels_scale.stack.options import (
    CONSUMERS,
    DEFAULT_LB,
    EXAMPLE_APP,
    EXAMPLE_DIR,
    EXAMPLE_INSTALLED,
    EXAMPLE_SETTINGS,
    LOAD_BALANCERS,
    SERVERS,
    RunLayout,
    StackOptions,
)

if TYPE_CHECKING:
    from rich.table import Table

DEFAULT_RUN_DIR = Path(".run/channels-scale")


class _Stop(Exception):
    """Raised by the signal handler to leave the foreground wait."""


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    # Only once: a wrapper such as `timeout` may deliver the same signal twice (to the process
    # and to its group); the stop that follows must not be interrupted.
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise _Stop(signum)


def _options(args: argparse.Namespace) -> StackOptions:
    app_given = args.app is not None
    if not app_given and not (EXAMPLE_DIR / "config" / "asgi.py").is_file():
        raise ConfigError(
            f"no --app given and the bundled example is missing ({EXAMPLE_DIR}): from your "
            "project's directory pass --app MYPROJECT.asgi:application "
            "--settings MYPROJECT.settings"
        )
    pythonpath = (Path.cwd(),) if app_given else (EXAMPLE_DIR,)
    return StackOptions(
        app=args.app or EXAMPLE_APP,
        settings=args.settings if (args.settings or app_given) else EXAMPLE_SETTINGS,
        pythonpath=tuple(Path(p).resolve() for p in args.pythonpath) + pythonpath,
        workers=args.workers,
        host=args.host,
        port=args.port,
        redis_url=args.redis,
        lb=args.lb or DEFAULT_LB,
        http_port=args.http_port,
        server=args.server,
        layer=args.layer,
        consumer=args.consumer,
        run_dir=args.run_dir,
        max_message_bytes=args.max_message_bytes,
        collectstatic=not args.no_collectstatic,
        redis_password=args.redis_password,
        insecure_secret_key=args.insecure_secret_key,
        keep_channel_layers=args.keep_channel_layers,
        ready_path=args.ready_path,
        ready_ws_path=args.ready_ws_path,
        redis_cluster=args.redis_cluster,
        max_connections=args.max_connections,
    )


def cmd_up(args: argparse.Namespace) -> int:
    extras.require("server", "channels-scale up")
    if args.server == "daphne":
        extras.require("daphne", "channels-scale up --server daphne")
    if args.layer != "channels_scale":  # the recipe's layers, kept to compare against
        extras.require("bench", f"channels-scale up --layer {args.layer}")
    from rich.console import Console

    from channels_scale.stack import Stack
    from channels_scale.stack.control import describe

    console = Console(stderr=False, highlight=False)
    options = _options(args)
    if args.app is None and EXAMPLE_INSTALLED:  # a wheel's example: its DB in the run dir
        from channels_scale.stack.example import prepare_installed_example

        data = prepare_installed_example(options.run_dir, options.python)
        console.print(f"example data (SQLite, static files): {data}", markup=False)
    stack = Stack(options)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in _STOP_SIGNALS}
    detached = False
    try:
        stack.start()
        console.print(stack.layer_summary, markup=False, soft_wrap=True)
        console.print(f"channels-scale is up: {stack.http_url}/", markup=False)
        if options.lb == "direct":
            console.print(
                f"nginx (HTTP and static files, no websockets): "
                f"http://{options.host}:{stack.options.lb_http_port}/",
                markup=False,
            )
        for note in stack.notes:
            console.print(note, markup=False, soft_wrap=True)
        console.print(_process_table(stack.layout, stack.processes()))
        if args.detach:
            stack.detach()
            detached = True
            console.print(
                f"configs and logs: {stack.layout.root}   (stop it with: channels-scale down "
                f"--run-dir {stack.layout.root})",
                markup=False,
                soft_wrap=True,
            )
            return 0
        console.print(
            f"configs and logs: {stack.layout.root}   (Ctrl-C stops everything)",
            markup=False,
            soft_wrap=True,
        )
        sys.stdout.flush()
        code = stack.wait()
        if code == 0:
            console.print(
                "supervisord was shut down (by channels-scale down or supervisorctl): "
                "the stack is stopped"
            )
            return 0
        console.print(f"supervisord exited with code {code}")
        return 1
    except _Stop:
        return 0
    finally:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if not detached:
            stopped = stack.stop()
            if stopped:
                console.print(f"stopped: {describe(stopped)}", markup=False, soft_wrap=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_down(args: argparse.Namespace) -> int:
    from channels_scale.stack.control import describe, stop_running

    layout = RunLayout.of(args.run_dir)
    stopped = stop_running(layout)
    print(f"stopped the stack in {layout.root}: {describe(stopped)}")
    return 0


def _process_table(layout: RunLayout, processes: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="processes")
    for column in ("process", "state", "pid", "websockets", "detail"):
        table.add_column(column)
    for info in processes:
        name = str(info.get("name", "?"))
        websockets = ""
        if name.startswith("worker-"):
            health = worker_health(layout.sockets / f"{name}.sock", timeout=1)
            websockets = str(health["websockets"]) if health else "no answer"
        table.add_row(
            name, str(info.get("statename", "?")), str(info.get("pid", "")), websockets,
            str(info.get("description", "")),
        )  # fmt: skip
    return table


def cmd_status(args: argparse.Namespace) -> int:
    extras.require("server", "channels-scale status")
    from rich.console import Console

    from channels_scale.stack.control import supervisor_processes

    layout = RunLayout.of(args.run_dir)
    if not layout.state_file.exists():
        raise ConfigError(f"no stack was started in {layout.root}: pass the --run-dir given to up")
    processes = supervisor_processes(layout)
    state = json.loads(layout.state_file.read_text())
    console = Console(highlight=False)
    if processes is None:
        console.print(f"stack in {layout.root} is not running (supervisord does not answer)")
        return 1
    console.print(f"stack at {state['url']}/  redis {state['redis_url']}", markup=False)
    console.print(_process_table(layout, processes))
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default in ``--help`` (unless its help already names one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or not action.option_strings
        ):
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Bad input gets one line and exit code 2; the usage is printed by ``--help`` only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="channels-scale", description="Django Channels websockets at scale.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run Redis + N workers + a load balancer under supervisor",
        description="Run a Django ASGI app as Redis + N ASGI workers + nginx/HAProxy under "
        "supervisor: in the foreground (Ctrl-C, SIGTERM or SIGHUP stops everything), or with "
        "--detach in the background until `channels-scale down`.",
    )
    up.add_argument("--app", help=f"ASGI app, MODULE:ATTR (default: the example, {EXAMPLE_APP})")
    up.add_argument("--settings", help="DJANGO_SETTINGS_MODULE for the workers")
    up.add_argument(
        "--pythonpath", action="append", default=[], metavar="DIR",
        help="directory to put on the workers' PYTHONPATH (repeatable; the current directory is "
        "added when --app is given)",
    )  # fmt: skip
    up.add_argument("--workers", type=positive_int, default=None, help="workers (default: CPUs)")
    up.add_argument("--host", default="127.0.0.1", help="address the LB listens on")
    up.add_argument("--port", type=port_number, default=8000, help="port the LB listens on")
    up.add_argument(
        "--redis", metavar="URL",
        help="use this Redis (default: a private one): redis://… or rediss://…, several of them "
        "separated by commas (shards), redis+cluster://HOST:PORT[,HOST:PORT…] (a Redis Cluster) "
        "or redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER (Sentinel)",
    )  # fmt: skip
    up.add_argument(
        "--redis-cluster", metavar="N", type=int, default=0,
        help="start a private Redis Cluster of N masters (N >= 3) instead of one Redis",
    )  # fmt: skip
    up.add_argument(
        "--redis-password", metavar="PASSWORD",
        help="password of the private Redis (default: one generated per run dir, kept in "
        "RUN_DIR/redis/password)",
    )  # fmt: skip
    up.add_argument(
        "--lb", choices=LOAD_BALANCERS, default=None,
        help="load balancer: nginx/haproxy proxy HTTP, nginx-stream/haproxy-tcp proxy TCP, direct: "
        "the workers share --port (SO_REUSEPORT) and nginx serves HTTP on --http-port "
        f"(docs/operations.md) (default: {DEFAULT_LB})",
    )  # fmt: skip
    up.add_argument(
        "--http-port", type=port_number, default=None,
        help="with --lb direct: nginx's HTTP and static port (default: a free port, printed)",
    )  # fmt: skip
    up.add_argument("--server", choices=SERVERS, default="uvicorn", help="ASGI server")
    up.add_argument("--layer", choices=LAYERS, default=StackOptions.layer, help="channel layer")
    up.add_argument("--consumer", choices=CONSUMERS, default="ours",
                    help="consumer family of the example's endpoints")  # fmt: skip
    up.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="configs, sockets, logs")
    up.add_argument(
        "--max-message-bytes", type=positive_int, default=65536,
        help="largest websocket frame; over it the connection closes with 1009",
    )  # fmt: skip
    up.add_argument(
        "--no-collectstatic", action="store_true",
        help="do not run collectstatic before nginx serves STATIC_ROOT",
    )  # fmt: skip
    up.add_argument(
        "--detach", action="store_true",
        help="return once the stack is ready and leave it running (stop: channels-scale down)",
    )  # fmt: skip
    up.add_argument(
        "--insecure-secret-key", action="store_true",
        help="let an app whose SECRET_KEY is the example's public default run (development only)",
    )  # fmt: skip
    up.add_argument(
        "--keep-channel-layers", action="store_true",
        help="keep the project's CHANNEL_LAYERS (default: the workers' layer uses the stack's "
        "Redis through a generated settings module); up checks that it answers",
    )  # fmt: skip
    up.add_argument(
        "--ready-path", default="/", metavar="PATH",
        help="up is ready once GET PATH through the LB answers below 500, not 400",
    )  # fmt: skip
    up.add_argument("--ready-ws-path", metavar="PATH",
                    help="also require a websocket handshake on PATH to complete")  # fmt: skip
    up.add_argument("--max-connections", type=positive_int, metavar="N",
                    help="size nginx workers and fd limits for N websockets; refuse when the "
                    "open-files limit cannot hold them (docs/operations.md)")  # fmt: skip
    up.set_defaults(func=cmd_up)

    down = commands.add_parser("down", help="stop the stack running in a run directory")
    down.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="the run dir of up")
    down.set_defaults(func=cmd_down)

    status = commands.add_parser("status", help="state of each process of a running stack")
    status.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="the run dir of up")
    status.set_defaults(func=cmd_status)

    for register in _extensions():
        register(commands)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Subcommands that live in their own modules (``bench``, ``restart``, ``token``), or a
    placeholder naming the extra to install when theirs is missing (None: the base install)."""
    found = []
    commands_: tuple[tuple[str, str, str | None, str], ...] = (
        ("channels_scale.bench.command", "bench", "bench", "load-test a websocket endpoint"),
        ("channels_scale.stack.restart", "restart", "server", "restart the workers of a stack"),
        ("channels_scale.auth", "token", None, "issue a signed websocket token"),
    )
    for name, command, extra, help_text in commands_:
        if extra is not None and extras.missing_modules(extra):
            found.append(extras.placeholder(command, extra, help=help_text))
            continue
        found.append(importlib.import_module(name).register)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", 0) is None:
        import os

        args.workers = os.cpu_count() or 1
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"channels-scale: error: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"channels-scale: stack failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
