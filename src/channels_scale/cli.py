"""The ``channels-scale`` command.

Exit codes: 0 success; 1 the stack failed at run time; 2 bad input (an unknown flag or value, a
port in use, a missing program, a Redis that does not answer): one line on stderr says what is
wrong and how to fix it, and nothing is left running.
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
from typing import Any

from rich.console import Console
from rich.table import Table

from channels_scale import __version__
from channels_scale.argtypes import port_number, positive_int
from channels_scale.exceptions import ConfigError, StackError
from channels_scale.settings import LAYERS
from channels_scale.stack.health import worker_health
from channels_scale.stack.options import (
    CONSUMERS,
    EXAMPLE_APP,
    EXAMPLE_DIR,
    EXAMPLE_SETTINGS,
    LOAD_BALANCERS,
    SERVERS,
    RunLayout,
    StackOptions,
)

DEFAULT_RUN_DIR = Path(".run/channels-scale")


class _Stop(Exception):
    """Raised by the signal handler to leave the foreground wait."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def cmd_up(args: argparse.Namespace) -> int:
    from channels_scale.stack import Stack

    console = Console(stderr=False, highlight=False)
    app_given = args.app is not None
    pythonpath = (Path.cwd(),) if app_given else (EXAMPLE_DIR,)
    options = StackOptions(
        app=args.app or EXAMPLE_APP,
        settings=args.settings if (args.settings or app_given) else EXAMPLE_SETTINGS,
        pythonpath=tuple(Path(p).resolve() for p in args.pythonpath) + pythonpath,
        workers=args.workers,
        host=args.host,
        port=args.port,
        redis_url=args.redis,
        lb=args.lb,
        server=args.server,
        layer=args.layer,
        consumer=args.consumer,
        run_dir=args.run_dir,
        max_message_bytes=args.max_message_bytes,
        collectstatic=not args.no_collectstatic,
    )
    stack = Stack(options)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.start()
        console.print(f"channels-scale is up: {stack.http_url}/", markup=False)
        console.print(_process_table(stack.layout, stack.processes()))
        console.print(f"configs and logs: {stack.layout.root}   (Ctrl-C stops everything)")
        sys.stdout.flush()
        code = stack.wait()
        console.print(f"supervisord exited with code {code}")
        return 1
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _process_table(layout: RunLayout, processes: list[dict[str, Any]]) -> Table:
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
    from channels_scale.stack.runner import supervisor_processes

    layout = RunLayout.of(args.run_dir)
    if not layout.state_file.exists():
        raise ConfigError(f"no stack was started in {layout.root}: pass the --run-dir given to up")
    processes = supervisor_processes(layout.supervisor_socket)
    state = json.loads(layout.state_file.read_text())
    console = Console(highlight=False)
    if processes is None:
        console.print(f"stack in {layout.root} is not running (supervisord does not answer)")
        return 1
    console.print(f"stack at {state['url']}/  redis {state['redis_url']}", markup=False)
    console.print(_process_table(layout, processes))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channels-scale", description="Django Channels websockets at scale."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run Redis + N workers + a load balancer under supervisor",
        description="Run a Django ASGI app as Redis + N ASGI workers + nginx/HAProxy under "
        "supervisor, in the foreground; Ctrl-C or SIGTERM stops everything.",
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
    up.add_argument("--redis", metavar="URL", help="use this Redis (default: a private one)")
    up.add_argument("--lb", choices=LOAD_BALANCERS, default="nginx")
    up.add_argument("--server", choices=SERVERS, default="uvicorn")
    up.add_argument("--layer", choices=LAYERS, default=StackOptions.layer)
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
    up.set_defaults(func=cmd_up)

    status = commands.add_parser("status", help="state of each process of a running stack")
    status.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    status.set_defaults(func=cmd_status)

    for register in _extensions():
        register(commands)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Subcommands that live in their own modules (``bench``, ``token``)."""
    found = []
    for name in ("channels_scale.bench.command", "channels_scale.auth"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.append(module.register)
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
