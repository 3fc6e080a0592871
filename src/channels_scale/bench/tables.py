"""The table of each scenario in a bench report, built from its JSON document (pure).

One Markdown table per run: delivery figures (fanout, rooms, churn), saturate's steps, idle memory,
the connection storm, the client libraries; each with ratios against :data:`BASELINES` in the same
run. :func:`scenario_tables` picks the tables of a run; report.py puts them on the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from channels_scale.bench.charts import main_figures
from channels_scale.bench.figures import ratio
from channels_scale.bench.topology_report import is_topology_doc, topology_tables

BASELINES = ("recipe", "socketio", "ceiling")


def num(value: Any, fmt: str = "{:,.0f}") -> str:
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
            f"{num(f['redis_bytes_in_per_frame'])} / {num(f['redis_bytes_out_per_frame'])}"
            if f["redis_bytes_in_per_frame"] is not None
            else "-"
        )
        rows.append(
            [
                record["stack"] + (f" (--lb {record['lb']})" if record.get("lb") else ""),
                num(f["offered_deliveries_per_s"]),
                num(f["deliveries_per_s"]),
                *(_ratio(f["deliveries_per_s"], _baseline(doc, b, dps)) for b in BASELINES),
                num(_pct(f, 50), "{:,.1f}"),
                num(_pct(f, 99), "{:,.1f}") + _small(f),
                num(_pct(f, 99.9), "{:,.1f}"),
                num(_pct(f, 100), "{:,.1f}"),
                f"{f['lost']:,} ({f['loss_ratio']:.1%})",
                num(f["duplicated"]),
                num(f["reordered"]),
                num(f["server_cpu_ms_per_1k"], "{:,.0f}"),
                *(_ratio(f["server_cpu_ms_per_1k"], _baseline(doc, b, cpu)) for b in BASELINES),
                num(f.get("lb_cpu_ms_per_1k"), "{:,.1f}"),
                num(f["redis_commands_per_frame"], "{:,.1f}"),
                bytes_io,
                f"{busiest:.0%}" + (" (saturated)" if f.get("client_saturated") else ""),
                num(f.get("other_load"), "{:.2f} cores"),
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
            f"{p['rate']:.0f}: {num(_pct(p['figures'], 99), '{:,.0f}')}{_small(p['figures'])}"
            + ("" if p["figures"]["lost"] == 0 else f" (lost {p['figures']['lost']:,})")
            for p in record.get("phases", [])
        )
        rows.append(
            [
                record["stack"],
                num(best(record)) if best(record) is not None else "none held",
                num(head.get("max_rate")),
                *(_ratio(best(record), _baseline(doc, b, best)) for b in BASELINES),
                num(head.get("server_cpu_ms_per_1k")),
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
                [record["stack"], num(p["rate"]), num(_pct(f, 99)), num(f["deliveries_per_s"])]
                + [num(shares.get(r), "{:.0%}") for r in SHARE_ROLES]
                + [num(f.get("other_load"), "{:.2f} cores")]
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
                num(idle.get("asked")),
                num(idle.get("held_at_end")),
                num(idle.get("handshake_errors")),
                num(idle.get("connect_per_s")),
                num(value / 1024 if value is not None else None, "{:,.1f}"),
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
            return num(value / 1024 if value is not None else None, "{:,.1f}")

        rows.append(
            [
                record["stack"],
                num(c["asked"]),
                num(c["opened"]),
                num(c["handshake_errors"]),
                num(c["seconds_to_all"], "{:,.1f}") + in_time,
                num(storm.get("50"), "{:,.1f}"),
                num(storm.get("99"), "{:,.1f}"),
                num(f["sent"]),
                f"{f['lost']:,}",
                num(_pct(f, 50), "{:,.1f}"),
                num(_pct(f, 99), "{:,.1f}") + _small(f),
                num(_pct(f, 100), "{:,.1f}"),
                num(c["held_at_end"]),
                kib("rss_per_connection_bytes"),
                kib("lb_rss_per_connection_bytes"),
                kib("server_rss_per_connection_bytes"),
                num(c.get("storm_server_cpu_ms_per_connection"), "{:,.2f}"),
                num(c.get("storm_machine_cores"), "{:.2f} cores"),
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
                num(f["deliveries"]),
                num(f["client_cpu_ms_per_1k"], "{:,.1f}"),
                f"{busiest:.0%}",
                num(_pct(f, 50), "{:,.1f}"),
                num(_pct(f, 99), "{:,.1f}"),
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
                num(churn["rate"], "{:g}"),
                num(churn["asked"]),
                num(churn["opened"]),
                num(churn["failed"]),
                num(latency.get("50"), "{:,.1f}"),
                num(latency.get("99"), "{:,.1f}"),
            ]
        )
    return _table(header, rows)


def scenario_tables(doc: dict[str, Any]) -> list[str]:
    """The Markdown table lines of one run, by its scenario (and Redis topologies)."""
    scenario = doc["scenario"]
    if scenario == "saturate":
        lines = [*_saturate_table(doc), "", *_saturate_cpu_table(doc)]
    elif scenario == "idle":
        lines = _idle_table(doc)
    elif scenario == "clientlib":
        lines = _clientlib_table(doc)
    elif scenario == "connections":
        lines = _connections_table(doc)
    else:
        lines = _delivery_table(doc)
    if scenario == "churn":
        lines += ["", *_churn_table(doc)]
    if is_topology_doc(doc):
        lines += ["", *topology_tables(doc)]
    return lines
