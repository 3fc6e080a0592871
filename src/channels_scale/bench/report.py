"""Bench outputs, all derived from one JSON document per run.

- ``<scenario>.json``: every raw figure (the source of truth; Markdown and PNG are built from it);
- ``<scenario>.md``: the table, with ratios against ``recipe``, ``socketio`` and ``ceiling``;
- ``<scenario>-latency.png``: latency percentiles per stack;
- ``saturate-rate.png``: deliveries/s received against deliveries/s offered, per stack.

``channels-scale bench report --from DIR`` re-renders these from the JSON files in ``DIR`` and
writes ``docs/benchmarks.md`` (the JSON and PNG files are copied next to it, in ``benchmarks/``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import subprocess
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from channels_scale.bench.charts import charts, doc_stem, main_figures
from channels_scale.bench.figures import MIN_SAMPLE_FRAMES, ratio
from channels_scale.bench.topology_report import is_topology_doc, topology_tables

SCHEMA = 1
ORDER = ("fanout", "saturate", "rooms", "churn", "idle", "connections", "clientlib")
BASELINES = ("recipe", "socketio", "ceiling")


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """What the run ran on: CPU, cores, memory, kernel, load, versions of the parts measured."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    versions: dict[str, str] = {"python": platform.python_version()}
    for dist in (
        "channels",
        "channels-redis",
        "redis",
        "uvicorn",
        "django",
        "websockets",
        "picows",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    for binary, flag in (("redis-server", "--version"), ("nginx", "-v")):
        try:
            done = subprocess.run([binary, flag], capture_output=True, text=True, timeout=5)
            versions[binary] = (done.stdout or done.stderr).strip().splitlines()[0][:80]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_average": list(os.getloadavg()),
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "versions": versions,
    }


# --------------------------------------------------------------------------- formatting


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _failed_row(record: dict[str, Any], width: int) -> list[str]:
    """A table row for a stack that could not be measured: its error, then empty cells."""
    return [record["stack"], f"failed: {record.get('error')}"] + [""] * (width - 2)


def _ratio(value: Any, base: Any) -> str:
    found = ratio(value, base)
    return "-" if found is None else f"x{found:.2g}" if found < 10 else f"x{found:.0f}"


def _pct(fig: dict[str, Any], p: float) -> Any:
    return fig["latency"]["percentiles_ms"].get(f"{p:g}")


SMALL = "†"
"""Marks a figure from a phase with too few frames (see ``small_sample`` in the figures)."""


def _small(fig: dict[str, Any]) -> str:
    return f" {SMALL}" if fig.get("small_sample") else ""


def _baseline(doc: dict[str, Any], name: str, key: Callable[[dict[str, Any]], Any]) -> Any:
    for record in doc["stacks"]:
        if record["stack"] == name and record.get("ok"):
            return key(record)
    return None


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _delivery_table(doc: dict[str, Any]) -> list[str]:
    def dps(r: dict[str, Any]) -> Any:
        f = main_figures(r)
        return f["deliveries_per_s"] if f else None

    def cpu(r: dict[str, Any]) -> Any:
        f = main_figures(r)
        return f["server_cpu_ms_per_1k"] if f else None

    header = ["stack", "offered deliveries/s", "deliveries/s"]
    header += [f"÷ {b}" for b in BASELINES]
    header += ["p50 ms", "p99 ms", "p99.9 ms", "max ms", "lost", "dup", "reordered"]
    header += ["server CPU ms /1k deliveries"] + [f"÷ {b}" for b in BASELINES]
    header += ["of which LB"]
    header += ["Redis cmds /frame", "Redis bytes in/out /frame", "client CPU max", "other load"]
    rows = []
    for record in doc["stacks"]:
        f = main_figures(record)
        if not record.get("ok") or f is None:
            rows.append(_failed_row(record, len(header)))
            continue
        clients = f.get("clients") or []
        busiest = max((c["utilization"] for c in clients), default=0.0)
        bytes_io = (
            f"{_num(f['redis_bytes_in_per_frame'])} / {_num(f['redis_bytes_out_per_frame'])}"
            if f["redis_bytes_in_per_frame"] is not None
            else "-"
        )
        rows.append(
            [
                record["stack"] + (f" (--lb {record['lb']})" if record.get("lb") else ""),
                _num(f["offered_deliveries_per_s"]),
                _num(f["deliveries_per_s"]),
                *(_ratio(f["deliveries_per_s"], _baseline(doc, b, dps)) for b in BASELINES),
                _num(_pct(f, 50), "{:,.1f}"),
                _num(_pct(f, 99), "{:,.1f}") + _small(f),
                _num(_pct(f, 99.9), "{:,.1f}"),
                _num(_pct(f, 100), "{:,.1f}"),
                f"{f['lost']:,} ({f['loss_ratio']:.1%})",
                _num(f["duplicated"]),
                _num(f["reordered"]),
                _num(f["server_cpu_ms_per_1k"], "{:,.0f}"),
                *(_ratio(f["server_cpu_ms_per_1k"], _baseline(doc, b, cpu)) for b in BASELINES),
                _num(f.get("lb_cpu_ms_per_1k"), "{:,.1f}"),
                _num(f["redis_commands_per_frame"], "{:,.1f}"),
                bytes_io,
                f"{busiest:.0%}" + (" (saturated)" if f.get("client_saturated") else ""),
                _num(f.get("other_load"), "{:.2f} cores"),
            ]
        )
    return _table(header, rows)


def _saturate_table(doc: dict[str, Any]) -> list[str]:
    def best(r: dict[str, Any]) -> Any:
        return (r.get("headline") or {}).get("max_deliveries_per_s")

    bound = doc["config"]["bound_ms"]
    header = ["stack", f"highest deliveries/s held (p99 ≤ {bound:g} ms, no loss)", "frames/s"]
    header += [f"÷ {b}" for b in BASELINES] + [
        "server CPU ms /1k at that rate",
        "steps (frames/s: p99 ms)",
    ]
    rows = []
    for record in doc["stacks"]:
        if not record.get("ok"):
            rows.append(_failed_row(record, len(header)))
            continue
        head = record.get("headline") or {}
        steps = ", ".join(
            f"{p['rate']:.0f}: {_num(_pct(p['figures'], 99), '{:,.0f}')}{_small(p['figures'])}"
            + ("" if p["figures"]["lost"] == 0 else f" (lost {p['figures']['lost']:,})")
            for p in record.get("phases", [])
        )
        rows.append(
            [
                record["stack"],
                _num(best(record)) if best(record) is not None else "none held",
                _num(head.get("max_rate")),
                *(_ratio(best(record), _baseline(doc, b, best)) for b in BASELINES),
                _num(head.get("server_cpu_ms_per_1k")),
                steps,
            ]
        )
    return _table(header, rows)


SHARE_ROLES = ("worker", "lb", "redis", "client")


def _saturate_cpu_table(doc: dict[str, Any]) -> list[str]:
    """Per saturate step, the busiest process of each role as a share of one core: at the step
    that fails, a process near 100% is the bound; none near it means the machine (or a wait)."""
    header = ["stack", "frames/s", "p99 ms", "deliveries/s"]
    header += [f"busiest {r} (% of a core)" for r in SHARE_ROLES] + ["other load"]
    rows = []
    for record in doc["stacks"]:
        for p in record.get("phases", []) if record.get("ok") else []:
            f, shares = p["figures"], p.get("busiest_cpu") or {}
            rows.append(
                [record["stack"], _num(p["rate"]), _num(_pct(f, 99)), _num(f["deliveries_per_s"])]
                + [_num(shares.get(r), "{:.0%}") for r in SHARE_ROLES]
                + [_num(f.get("other_load"), "{:.2f} cores")]
            )
    return _table(header, rows) if rows else []


def _idle_table(doc: dict[str, Any]) -> list[str]:
    def per_conn(r: dict[str, Any]) -> Any:
        return (r.get("idle") or {}).get("rss_per_connection_bytes")

    header = ["stack", "asked", "held at end", "handshake errors", "connects/s"]
    header += ["worker RSS per idle connection KiB"] + [f"÷ {b}" for b in BASELINES]
    rows = []
    for record in doc["stacks"]:
        if not record.get("ok"):
            rows.append(_failed_row(record, len(header)))
            continue
        idle = record.get("idle") or {}
        value = per_conn(record)
        rows.append(
            [
                record["stack"],
                _num(idle.get("asked")),
                _num(idle.get("held_at_end")),
                _num(idle.get("handshake_errors")),
                _num(idle.get("connect_per_s")),
                _num(value / 1024 if value is not None else None, "{:,.1f}"),
                *(_ratio(value, _baseline(doc, b, per_conn)) for b in BASELINES),
            ]
        )
    return _table(header, rows)


def _connections_table(doc: dict[str, Any]) -> list[str]:
    header = ["stack", "connections", "open", "handshake errors", "s to all open"]
    header += ["connect p50 ms", "p99 ms", "frames", "lost", "delivery p50 ms", "p99 ms", "max ms"]
    header += ["held at end", "RSS /conn KiB: workers", "LB", "all server"]
    header += ["server CPU ms /connect", "machine busy during storm"]
    rows = []
    for record in doc["stacks"]:
        f = main_figures(record)
        c = record.get("connections")
        if not record.get("ok") or f is None or not c:
            rows.append(_failed_row(record, len(header)))
            continue
        storm = c.get("connect_latency_ms") or {}
        in_time = "" if c.get("within_bound") else f" (over {c.get('bound_s', 0):g} s)"

        def kib(key: str, conns: dict[str, Any] = c) -> str:
            value = conns.get(key)
            return _num(value / 1024 if value is not None else None, "{:,.1f}")

        rows.append(
            [
                record["stack"],
                _num(c["asked"]),
                _num(c["opened"]),
                _num(c["handshake_errors"]),
                _num(c["seconds_to_all"], "{:,.1f}") + in_time,
                _num(storm.get("50"), "{:,.1f}"),
                _num(storm.get("99"), "{:,.1f}"),
                _num(f["sent"]),
                f"{f['lost']:,}",
                _num(_pct(f, 50), "{:,.1f}"),
                _num(_pct(f, 99), "{:,.1f}") + _small(f),
                _num(_pct(f, 100), "{:,.1f}"),
                _num(c["held_at_end"]),
                kib("rss_per_connection_bytes"),
                kib("lb_rss_per_connection_bytes"),
                kib("server_rss_per_connection_bytes"),
                _num(c.get("storm_server_cpu_ms_per_connection"), "{:,.2f}"),
                _num(c.get("storm_machine_cores"), "{:.2f} cores"),
            ]
        )
    return _table(header, rows)


def _clientlib_table(doc: dict[str, Any]) -> list[str]:
    header = [
        "client library",
        "deliveries",
        "client CPU ms /1k deliveries",
        "client CPU max",
        "p50 ms",
        "p99 ms",
    ]
    rows = []
    for record in doc["stacks"]:
        f = main_figures(record)
        if not record.get("ok") or f is None:
            rows.append(_failed_row(record, 6))
            continue
        busiest = max((c["utilization"] for c in f.get("clients") or []), default=0.0)
        rows.append(
            [
                record.get("client_lib", record["stack"]),
                _num(f["deliveries"]),
                _num(f["client_cpu_ms_per_1k"], "{:,.1f}"),
                f"{busiest:.0%}",
                _num(_pct(f, 50), "{:,.1f}"),
                _num(_pct(f, 99), "{:,.1f}"),
            ]
        )
    return _table(header, rows)


def _churn_table(doc: dict[str, Any]) -> list[str]:
    header = ["stack", "churn connects/s", "asked", "opened", "failed", "connect p50 ms", "p99 ms"]
    rows = []
    for record in doc["stacks"]:
        churn = record.get("churn")
        if not record.get("ok") or not churn:
            continue
        latency = churn.get("connect_latency_ms") or {}
        rows.append(
            [
                record["stack"],
                _num(churn["rate"], "{:g}"),
                _num(churn["asked"]),
                _num(churn["opened"]),
                _num(churn["failed"]),
                _num(latency.get("50"), "{:,.1f}"),
                _num(latency.get("99"), "{:,.1f}"),
            ]
        )
    return _table(header, rows)


def markdown(doc: dict[str, Any], images: dict[str, str] | None = None, level: int = 2) -> str:
    """The Markdown section of one run: what ran, where, the table, notes and charts."""
    cfg = doc["config"]
    m = doc["machine"]
    scenario = doc["scenario"]
    h = "#" * level
    options = ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in cfg.items()
        if k not in ("stacks", "url") and v is not None
    )
    title = f"{scenario} on Redis topologies" if is_topology_doc(doc) else scenario
    lines = [
        f"{h} {title}",
        "",
        f"`{doc['command']}` — {doc['started_at']}, {doc['seconds']:.0f} s",
        "",
        f"Machine: {m['cpu'] or 'unknown CPU'}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, load average at start {m['load_average'][0]:.2f}, "
        f"fd limit {m['fd_limit']}. Options: {options}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) + ".",
        "",
    ]
    if scenario == "saturate":
        lines += [*_saturate_table(doc), "", *_saturate_cpu_table(doc)]
    elif scenario == "idle":
        lines += _idle_table(doc)
    elif scenario == "clientlib":
        lines += _clientlib_table(doc)
    elif scenario == "connections":
        lines += _connections_table(doc)
    else:
        lines += _delivery_table(doc)
    if scenario == "churn":
        lines += ["", *_churn_table(doc)]
    if is_topology_doc(doc):
        lines += ["", *topology_tables(doc)]
    lines += ["", *_notes(doc)]
    for title, path in (images or {}).items():
        lines += ["", f"![{title}]({path})"]
    return "\n".join(lines) + "\n"


def _notes(doc: dict[str, Any]) -> list[str]:
    notes = [
        "Latency runs from each frame's *scheduled* send time to its receipt (no coordinated "
        "omission); lost = deliveries owed for the frames sent but not received within the drain "
        "window. Ratios divide this stack's figure by the baseline's, whatever the direction of "
        "better. Server CPU counts every server-side process (workers, Redis, nginx, supervisord)."
    ]
    if doc["scenario"] == "clientlib":
        notes.append(
            "The same fanout against the ceiling, once per client library: the load generator "
            "uses the one with the lowest client CPU per 1,000 deliveries (`--client-lib` default)."
        )
    if doc["scenario"] == "connections":
        notes.append(
            "All connections are opened at once (at most 1,000 handshakes in flight, from "
            "client sockets bound to addresses spread over 127.0.0.0/8), then one of them "
            "publishes and every frame is owed to all of them. Connect latency: from a "
            "handshake's start to the open websocket. RSS per connection: what the server's "
            "processes added during the storm, over the connections opened. The stack is "
            "started with `up --max-connections` set to the connection count (docs/operations.md)."
        )
    if doc["scenario"] == "idle":
        notes.append(
            "RSS per idle connection: the RSS the worker processes added from the first ramp step "
            "to the last, over the connections added (what the first connections pay once is "
            "left out); a connection costs this on whichever worker holds it."
        )
    notes += _method_notes(doc)
    names = [r["stack"] for r in doc["stacks"]]
    if any(n.startswith("ceiling") for n in names):
        notes.append(
            "The ceiling is one process whatever `--workers` says: processes could not share rooms "
            "without a broker, and the broker is what the ceiling leaves out. It is the bound for "
            "one Python process, not for N workers."
        )
    busy = sorted(
        {
            r["stack"]
            for r in doc["stacks"]
            for p in r.get("phases") or []
            if (p["figures"].get("other_load") or 0) > 0.25
        }
    )
    if busy:
        notes.append(
            "Other work on this shared machine used more than a quarter of a core during: "
            + ", ".join(busy)
            + " (column *other load*); those figures may be disturbed."
        )
    saturated = [
        r["stack"]
        for r in doc["stacks"]
        for p in r.get("phases") or []
        if p["figures"].get("client_saturated")
    ]
    if saturated:
        notes.append(
            "A load-generator process was saturated (≥90% of a core) on: "
            + ", ".join(sorted(set(saturated)))
            + "; figures there may be bounded by the client, not the server."
        )
    return [f"- {n}" for n in notes]


def _method_notes(doc: dict[str, Any]) -> list[str]:
    """What the warm-up saw, and which phases had too few frames to trust their percentiles."""
    notes = []
    warm = [
        f"{r['stack']} {_num(r['warmup'].get('max_ms'), '{:,.0f}')} ms"
        for r in doc["stacks"]
        if r.get("warmup") and r["warmup"].get("sent")
    ]
    if warm:
        notes.append(
            "Every stack was warmed up before its first measured phase (connections open, "
            "a few frames per room sent and discarded, not counted); the slowest warm-up frame: "
            + ", ".join(warm)
            + "."
        )
    small = [
        f"{r['stack']} {p.get('label', '')} ({p['figures']['sent']} frames)"
        for r in doc["stacks"]
        for p in r.get("phases") or []
        if p["figures"].get("small_sample")
    ]
    if small:
        notes.append(
            f"{SMALL} small sample, fewer than {MIN_SAMPLE_FRAMES} frames published, so its p99 "
            "is about one frame's latency: " + ", ".join(small) + "."
        )
    return notes


# --------------------------------------------------------------------------- files


def write_run(doc: dict[str, Any], out: Path) -> list[Path]:
    """Write ``<scenario>.json``, ``.md`` and the charts into ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{doc_stem(doc)}.json"
    json_path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    images = charts(doc, out)
    md_path = out / f"{doc_stem(doc)}.md"
    md_path.write_text(markdown(doc, images, level=1))
    return [json_path, md_path, *(out / name for name in images.values())]


def load_runs(sources: Iterable[Path]) -> list[dict[str, Any]]:
    """Every bench JSON document in ``sources`` (files or directories), in :data:`ORDER`."""
    docs = []
    for source in sources:
        files = sorted(source.glob("*.json")) if source.is_dir() else [source]
        for path in files:
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("schema") == SCHEMA and "scenario" in doc:
                docs.append(doc)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(docs, key=lambda d: (rank.get(d["scenario"], 99), d.get("started_at", "")))


DOC_INTRO = """# Benchmarks

Generated by `channels-scale bench report --from docs/benchmarks` from the JSON files in
[`benchmarks/`](benchmarks/) (every raw figure is there); do not edit by hand: run a scenario
(`channels-scale bench fanout ...`, it writes `bench-results/fanout.json`), then
`channels-scale bench report --from bench-results` to refresh this page.

Each section names the exact command, the machine and the options it ran with. Stacks:
`ours` (channels_scale layer + our consumer), `recipe` (Channels `AsyncWebsocketConsumer` +
channels_redis core layer), `pubsub` (the same consumer on channels_redis pub/sub), `ceiling`
(a bare `websockets` broadcast server: one process, no Django, no Redis), `socketio` (Socket.IO
4.8 with `@socket.io/redis-adapter` on Node, the peer users pick instead: one Node process per
worker, websocket transport only, its packages installed by `./scripts/install --socketio`), each
started by the bench with the same number of workers, a private Redis and nginx (the same nginx
config for all), one after the other.

How to read the figures:

- *deliveries/s*: frames received (first copies) per second over the phase; *offered* is what the
  publisher's fixed schedule asked for (frames/s times room size).
- *latency*: from each frame's **scheduled** send time to its receipt, so a stack that falls
  behind shows its backlog (no coordinated omission); HdrHistograms merged across client
  processes.
- *lost*: deliveries owed for the frames sent but not received before the drain deadline;
  *dup* and *reordered* are counted per subscriber and publisher.
- *server CPU ms /1k deliveries*: user + system CPU of every server-side process (workers,
  Redis, nginx, supervisord; for `socketio` the Node processes count as workers) from `/proc`,
  per 1,000 deliveries.
- *Redis cmds, bytes /frame*: `INFO commandstats` and `INFO stats` deltas per published frame.
- *client CPU max*: the busiest load-generator process (a saturated client is flagged);
  *other load*: CPU used on the machine by anything else during the phase, in cores.
- Ratios (`÷ recipe`, `÷ socketio`, `÷ ceiling`) divide a stack's figure by the baseline's in
  the same run. Absolute numbers on a shared 2-core machine drift from run to run; the ratios
  hold better.
- `saturate` doubles the rate per step of a few seconds (at least 100 frames and 2 s, so a step's
  p99 is not one frame's latency) until p99 passes the bound or a frame is lost, then bisects
  twice; short steps make it sensitive to hiccups of a shared machine. Its second table gives,
  per step, the busiest process of each role as a share of one core (`busiest_cpu` in the JSON,
  from `/proc` over the step's window): a process near 100% at the failing step is the bound;
  none near it means the machine as a whole (see *other load*) or a wait.
- Every stack is warmed up before its first measured phase: connections open, then 10 frames per
  room sent and discarded (our layer's first `group_send` loads its Redis script, first uses
  import and allocate); the slowest warm-up frame is given in the notes. A phase with fewer than
  100 frames published is marked † (its percentiles are about single frames' latencies).

Your own endpoint: any websocket endpoint that fans a client's frame out to everyone in a room can
be measured with `--url` (a running deployment on loopback) and the endpoint options, e.g. a chat
shaped like the Channels tutorial:

```sh
channels-scale bench fanout --url ws://127.0.0.1:8000 --path '/ws/chat/{room}/' \\
    --frame '{"message": "{payload}"}' --origin http://127.0.0.1:8000 [--header Cookie:sessionid=…]
```

`--path` puts the room name where `{room}` is (default `/ws/broadcast/{room}/`); `--frame` is
what a publisher sends, `{payload}` replaced by a token of letters, digits and `-` (phase,
publisher, sequence, scheduled time; padded to 100 bytes) that needs no escaping; a received frame
counts as delivered when the token appears anywhere in it, so the server may wrap or re-serialise
the message. `--origin` and `--header` (repeatable) go with every handshake; header values are
kept out of the JSON and the command line written. Before loading, the bench opens one websocket
as the clients will: a refused handshake exits 2 with its status and likely cause (403: an Origin
check such as Channels' `AllowedHostsOriginValidator`, which refuses a missing Origin, or
authentication; 404, or 500 with "No route found" in the server log: the path), as does a socket
closed right after it opened (e.g. 4401 for a consumer that closes anonymous users).
"""


def write_doc(docs: list[dict[str, Any]], doc_path: Path) -> list[Path]:
    """Write ``doc_path`` (Markdown) and its ``benchmarks/`` folder of JSON and PNG files."""
    assets = doc_path.parent / "benchmarks"
    assets.mkdir(parents=True, exist_ok=True)
    written = []
    sections = [DOC_INTRO]
    for doc in docs:
        json_path = assets / f"{doc_stem(doc)}.json"
        json_path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
        images = {t: f"benchmarks/{n}" for t, n in charts(doc, assets).items()}
        sections.append(markdown(doc, images, level=2))
        written += [json_path, *(doc_path.parent / p for p in images.values())]
    doc_path.write_text("\n".join(sections))
    return [doc_path, *written]
