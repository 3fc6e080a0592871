"""``channels-scale bench``: run a scenario side by side on several stacks, or render reports.

::

    channels-scale bench fanout   [--stacks ours,recipe,pubsub,ceiling,socketio | --url URL] ...
    channels-scale bench fanout   --url ws://HOST:PORT --path '/ws/chat/{room}/' \
                                  --frame '{"message": "{payload}"}' --origin http://HOST:PORT
    channels-scale bench fanout   --url ws://HOST:PORT --url-wire socketio
    channels-scale bench saturate --stacks ours,recipe,ceiling --bound-ms 100
    channels-scale bench fanout   --subs 1000 --label 1000-subs   # beside fanout.json
    channels-scale bench report   --from bench-results --doc docs/benchmarks.md

Exit codes: 0 every stack measured; 1 a stack failed (its error is in the JSON and the table, the
others still report); 2 bad input (``error: <one line>``).
"""

from __future__ import annotations

import argparse
import re
import secrets
import shlex
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from channels_scale.argtypes import non_negative_float, positive_float, positive_int
from channels_scale.bench import clientlib
from channels_scale.bench.endpoint import (
    DEFAULT_PATH,
    Endpoint,
    parse_frame,
    parse_header,
    parse_origin,
    parse_path,
)
from channels_scale.bench.scenarios import DEFAULTS, SCENARIOS, BenchConfig
from channels_scale.bench.stacks import STACKS, parse_stacks
from channels_scale.bench.wire import DEFAULT_WIRE, WIRES, wire_named
from channels_scale.exceptions import ConfigError
from channels_scale.stack.options import LOAD_BALANCERS, StackOptions

DEFAULT_STACKS = ",".join(STACKS)
DEFAULT_OUT = Path("bench-results")


def stack_list(text: str) -> list[str]:
    """argparse type: a comma-separated list of stack names."""
    try:
        return parse_stacks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _argtype(parse: Callable[[str], object], name: str) -> Callable[[str], object]:
    """An argparse type from a parser that raises ValueError with the reason."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names the type in its own messages
    return convert


def _topologies(text: str) -> list[str]:
    """``--redis-topology single,shards:3,cluster:3``: each checked by
    :func:`~channels_scale.stack.topology.parse_topology`."""
    from channels_scale.stack.topology import parse_topology

    found = [parse_topology(part) for part in text.split(",") if part.strip()]
    if not found:
        raise ValueError("name at least one topology: single, shards:K or cluster:N")
    return list(dict.fromkeys(k if k == "single" else f"{k}:{n}" for k, n in found))


LABEL = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


def parse_label(text: str) -> str:
    """``--label``: lowercase letters, digits and ``-`` (it becomes part of file names)."""
    if not LABEL.fullmatch(text):
        raise ValueError(
            f"takes up to 40 lowercase letters, digits and '-', starting with a letter or "
            f"digit (it names the files), not {text!r}"
        )
    return text


def parse_wire(text: str) -> str:
    """``--url-wire``: a wire of :mod:`channels_scale.bench.wire`."""
    return wire_named(text).name


def _defaults_help(scenario: str) -> str:
    return ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in DEFAULTS[scenario].items())


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    target = common.add_mutually_exclusive_group()
    target.add_argument(
        "--stacks",
        type=stack_list,
        default=None,
        help=f"stacks to start and compare, one after the other (default {DEFAULT_STACKS})",
    )
    target.add_argument("--url", help="a running deployment on loopback instead: ws://HOST:PORT")
    endpoint = common.add_argument_group(
        "endpoint (with --url)",
        "Any endpoint that fans a client's frame out to everyone in a room; a frame counts as "
        "delivered when it carries the payload the bench embedded.",
    )
    endpoint.add_argument(
        "--path",
        type=_argtype(parse_path, "path"),
        default=DEFAULT_PATH,
        help=f"websocket path, {{room}} standing for the room name (default {DEFAULT_PATH})",
    )
    endpoint.add_argument(
        "--url-wire",
        type=_argtype(parse_wire, "wire"),
        help=f"what the endpoint speaks: {' or '.join(WIRES)} (default {DEFAULT_WIRE}); "
        "socketio: Socket.IO v4 on its websocket transport at /socket.io/ with the room in the "
        "query (?room=...), the frame as event 'm' relayed to the room, as the bench's socketio "
        "stack does (bench/socketio/server.js)",
    )
    endpoint.add_argument(
        "--frame",
        type=_argtype(parse_frame, "frame"),
        help='frame to send, {payload} standing for the bench payload, e.g. \'{"message": '
        '"{payload}"}\' (default: the bench frame itself)',
    )
    endpoint.add_argument(
        "--origin",
        type=_argtype(parse_origin, "origin"),
        help="Origin header of every handshake (Channels' AllowedHostsOriginValidator needs one)",
    )
    endpoint.add_argument(
        "--header",
        type=_argtype(parse_header, "header"),
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra handshake header, e.g. Cookie:sessionid=... (repeatable; values are not "
        "written to the results)",
    )
    common.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="ASGI workers of each Django stack (default 2)",
    )
    common.add_argument(
        "--redis-topology",
        type=_argtype(_topologies, "Redis topology"),
        help="run the ours stack once on each Redis topology, comma-separated: single, shards:K "
        "(K private redis-servers) or cluster:N (a private N-master Redis Cluster); adds CPU "
        "and commands per Redis node (fanout, saturate, rooms)",
    )
    common.add_argument(
        "--lb",
        choices=LOAD_BALANCERS,
        default=None,
        help=f"load balancer mode of each Django stack (channels-scale up --lb; default "
        f"{StackOptions.lb}); the report gives its own CPU per 1k deliveries",
    )
    common.add_argument(
        "--subs", type=positive_int, help="subscribers in the room (fanout, churn, saturate)"
    )
    common.add_argument("--msgs", type=positive_int, help="frames the publisher sends (fanout)")
    common.add_argument(
        "--rate", type=positive_float, help="frames/s per publisher (saturate: the first step)"
    )
    common.add_argument(
        "--duration",
        type=positive_float,
        help="seconds of load (rooms, churn, connections), of each step (saturate), of holding "
        "(idle)",
    )
    common.add_argument(
        "--clients", type=positive_int, help="connections (rooms, idle, connections)"
    )
    common.add_argument("--room-size", type=positive_int, help="clients per room (rooms)")
    common.add_argument(
        "--bound-ms",
        type=positive_float,
        default=100.0,
        help="p99 bound for saturate (default 100)",
    )
    common.add_argument(
        "--procs", type=positive_int, default=2, help="load-generator processes (default 2)"
    )
    common.add_argument(
        "--client-lib",
        choices=clientlib.LIBRARIES,
        default=clientlib.DEFAULT_LIBRARY,
        help=f"websocket client (default {clientlib.DEFAULT_LIBRARY}, the cheapest measured)",
    )
    common.add_argument(
        "--drain",
        type=non_negative_float,
        default=10.0,
        help="seconds to wait for late frames after the last send (default 10)",
    )
    common.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"directory for JSON, Markdown and PNG (default {DEFAULT_OUT})",
    )
    common.add_argument(
        "--label",
        type=_argtype(parse_label, "label"),
        help="name this run, e.g. 1000-subs: its files are <scenario>-<label>.json (...) beside "
        "the other runs of the scenario, and bench report gives it its own section",
    )
    common.add_argument("--quiet", action="store_true", help="no live progress")
    return common


SCENARIO_HELP = {
    "fanout": "S subscribers in one room, one publisher at a fixed rate",
    "rooms": "C clients in rooms of K, every client publishing at a fixed rate",
    "idle": "ramp to C idle connections in steps and hold them: RSS per connection",
    "churn": "fanout while clients connect and disconnect at a fixed rate",
    "saturate": "fanout with the rate stepped up until p99 passes the bound",
    "clientlib": "fanout against the ceiling once per client library: load-generator cost",
    "connections": "C connections opened at once, then a broadcast to all of them at R/s for D s",
}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``bench`` (scenarios and ``report``) to the ``channels-scale`` subcommands."""
    bench = subparsers.add_parser(
        "bench",
        help="load-test the broadcast endpoint side by side: tables and charts",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    scenarios = bench.add_subparsers(dest="scenario", metavar="SCENARIO", required=True)
    common = _common()
    for name in SCENARIOS:
        sub = scenarios.add_parser(
            name,
            parents=[common],
            help=SCENARIO_HELP[name],
            description=f"{SCENARIO_HELP[name]}. Defaults: {_defaults_help(name)}.",
        )
        sub.set_defaults(func=run_command)
    report = scenarios.add_parser("report", help="render docs/benchmarks.md from bench JSON files")
    report.add_argument(
        "--from",
        dest="sources",
        type=Path,
        action="append",
        required=True,
        help="a directory of bench JSON files, or one file (repeatable)",
    )
    report.add_argument(
        "--doc",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="Markdown file to write (default docs/benchmarks.md)",
    )
    report.set_defaults(func=report_command)


def endpoint_from(args: argparse.Namespace) -> Endpoint:
    """The :class:`Endpoint` of parsed arguments.

    Raises:
        ConfigError: an endpoint option without ``--url`` (the stacks the bench starts serve only
            ``/ws/broadcast/<room>/``).
    """
    headers = [("Origin", args.origin)] if args.origin else []
    headers += args.header
    wire = args.url_wire or DEFAULT_WIRE
    custom = args.path != DEFAULT_PATH or args.frame is not None or headers or args.url_wire
    if custom and args.url is None:
        raise ConfigError(
            "--path, --frame, --origin, --header and --url-wire go with --url (the stacks the "
            "bench starts serve /ws/broadcast/<room>/ and choose their own wire)"
        )
    if wire == "socketio" and args.path != DEFAULT_PATH:
        raise ConfigError(
            "--path does not apply to --url-wire socketio: clients connect to /socket.io/ with "
            "the room in the query"
        )
    return Endpoint(path=args.path, frame=args.frame, headers=tuple(headers), wire=wire)


def config_from(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` of parsed arguments."""
    return BenchConfig(
        scenario=args.scenario,
        stacks=args.stacks or parse_stacks(DEFAULT_STACKS),
        url=args.url,
        workers=args.workers,
        lb=args.lb,
        subs=args.subs,
        msgs=args.msgs,
        rate=args.rate,
        duration=args.duration,
        clients=args.clients,
        room_size=args.room_size,
        bound_ms=args.bound_ms,
        procs=args.procs,
        client_lib=args.client_lib,
        drain_s=args.drain,
        redis_topologies=args.redis_topology,
        out=args.out,
        endpoint=endpoint_from(args),
    )


def command_line(cfg: BenchConfig, label: str | None = None) -> str:
    """The command that reproduces ``cfg`` and ``--label`` (options left at their defaults are
    omitted)."""
    parts = ["channels-scale", "bench", cfg.scenario]
    if cfg.url:
        parts += ["--url", cfg.url]
        endpoint = cfg.endpoint
        if endpoint.wire != DEFAULT_WIRE:
            parts += ["--url-wire", endpoint.wire]
        if endpoint.path != DEFAULT_PATH:
            parts += ["--path", shlex.quote(endpoint.path)]
        if endpoint.frame is not None:
            parts += ["--frame", shlex.quote(endpoint.frame)]
        for header in endpoint.redacted_headers():
            name, _, value = header.partition(":")
            if name == "Origin":
                parts += ["--origin", value]
            else:
                parts += ["--header", shlex.quote(header)]
    elif cfg.scenario != "clientlib" and not cfg.redis_topologies:  # those: ceiling, ours
        parts += ["--stacks", ",".join(cfg.stacks)]
    if cfg.workers != 2:
        parts += ["--workers", str(cfg.workers)]
    if cfg.lb is not None:
        parts += ["--lb", cfg.lb]
    for name in ("subs", "msgs", "rate", "duration", "clients", "room_size"):
        value = getattr(cfg, name)
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", f"{value:g}"]
    if cfg.bound_ms != 100.0:
        parts += ["--bound-ms", f"{cfg.bound_ms:g}"]
    if cfg.procs != 2:
        parts += ["--procs", str(cfg.procs)]
    if cfg.client_lib != clientlib.DEFAULT_LIBRARY:
        parts += ["--client-lib", cfg.client_lib]
    if cfg.redis_topologies:
        parts += ["--redis-topology", ",".join(cfg.redis_topologies)]
    if label is not None:
        parts += ["--label", label]
    return " ".join(parts)


def execute(
    cfg: BenchConfig, quiet: bool = False, label: str | None = None
) -> tuple[dict[str, Any], list[Path]]:
    """Run the bench of ``cfg`` and write its outputs; returns the JSON document and the files.

    ``label`` (``--label``) names the run: its files and its section in the report.

    Raises:
        ConfigError: bad input (an unreachable or non-loopback ``--url``, ...).
    """
    from channels_scale.bench.live import QuietUi, RichUi, Ui
    from channels_scale.bench.report import SCHEMA, machine_info, write_run
    from channels_scale.bench.scenarios import run_bench
    from channels_scale.bench.stacks import check_handshake, check_stacks, check_url

    if cfg.url is not None:
        cfg.url = check_url(cfg.url)
        check_handshake(cfg.url, cfg.endpoint, f"bench-probe-{secrets.token_hex(3)}")
    else:
        check_stacks(cfg.stacks)
    ui: Ui = QuietUi() if quiet else RichUi()
    started = datetime.now(UTC)
    clock = time.monotonic()
    machine = machine_info()
    records = run_bench(cfg, ui)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "scenario": cfg.scenario,
        **({"label": label} if label else {}),
        "command": command_line(cfg, label),
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": time.monotonic() - clock,
        "machine": machine,
        "config": cfg.resolved(),
        "stacks": records,
    }
    files = write_run(doc, cfg.out)
    return doc, files


def run_command(args: argparse.Namespace) -> int:
    """``channels-scale bench SCENARIO``: 0 when every stack was measured, 1 when one failed."""
    doc, files = execute(config_from(args), quiet=args.quiet, label=args.label)
    from channels_scale.bench.report import markdown

    print(markdown(doc))
    for path in files:
        print(f"wrote {path}")
    return 0 if all(r.get("ok") for r in doc["stacks"]) else 1


def report_command(args: argparse.Namespace) -> int:
    """``channels-scale bench report``: render ``--doc`` from the JSON files of ``--from``."""
    from channels_scale.bench.report import load_runs, write_doc

    docs = load_runs(args.sources)
    if not docs:
        sources = ", ".join(str(s) for s in args.sources)
        raise ConfigError(
            f"no bench JSON files in {sources}: run `channels-scale bench fanout` first"
        )
    for path in write_doc(docs, args.doc):
        print(f"wrote {path}")
    return 0
