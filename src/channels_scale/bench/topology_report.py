"""The tables of a ``--redis-topology`` run (pure: from its JSON document).

One row per topology (the ours stack on ``single``, ``shards:K``, ``cluster:N``): deliveries/s,
p99, server CPU per 1,000 deliveries and the same ratio to ``single``, the Redis part of it, Redis
commands per frame; then one row per Redis node: its CPU per 1,000 deliveries, its share of a core
over the phase, its commands per frame. For ``saturate`` the phase is each topology's highest rate
held (and its deliveries/s held is shown).
"""

from __future__ import annotations

from typing import Any

from channels_scale.bench.charts import main_phase
from channels_scale.bench.figures import ratio


def is_topology_doc(doc: dict[str, Any]) -> bool:
    return bool(doc.get("config", {}).get("redis_topologies"))


def _num(value: Any, fmt: str = "{:,.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def topology_tables(doc: dict[str, Any]) -> list[str]:
    """Markdown lines: the per-topology table and the per-node table."""
    records = [r for r in doc["stacks"] if r.get("ok")]
    phases = {r["stack"]: main_phase(r) or {} for r in records}
    single = next((phases[r["stack"]] for r in records if r.get("redis_topology") == "single"), {})
    base_cpu = (single.get("figures") or {}).get("server_cpu_ms_per_1k")
    saturate = doc["scenario"] == "saturate"
    header = ["Redis topology", "nodes", "deliveries/s"]
    header += ["max deliveries/s held"] if saturate else []
    header += [
        "p99 ms",
        "server CPU ms /1k deliveries",
        "÷ single",
        "Redis CPU ms /1k (all nodes)",
        "Redis cmds /frame (all nodes)",
        "busiest node's share of Redis commands",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for record in records:
        phase = phases[record["stack"]]
        f = phase.get("figures") or {}
        nodes = phase.get("redis_nodes") or []
        redis_cpu = sum((n.get("cpu_ms_per_1k") or 0.0) for n in nodes) if nodes else None
        commands = [n.get("commands") or 0 for n in nodes]
        busiest = max(commands) / sum(commands) if commands and sum(commands) else None
        cells = [record.get("redis_topology", record["stack"]), str(len(nodes)),
                 _num(f.get("deliveries_per_s"), "{:,.0f}")]  # fmt: skip
        if saturate:
            held = (record.get("headline") or {}).get("max_deliveries_per_s")
            cells.append(_num(held, "{:,.0f}"))
        p99 = (f.get("latency") or {}).get("percentiles_ms", {}).get("99")
        cells += [
            _num(p99),
            _num(f.get("server_cpu_ms_per_1k"), "{:,.0f}"),
            _num(ratio(f.get("server_cpu_ms_per_1k"), base_cpu), "{:.2f}"),
            _num(redis_cpu),
            _num(f.get("redis_commands_per_frame"), "{:.2f}"),
            _num(busiest, "{:.0%}"),
        ]
        lines.append(_row(cells))
    lines += ["", _row(["Redis topology", "node", "CPU ms /1k deliveries", "CPU % of a core",
                        "commands", "commands /frame"]), _row(["---"] * 6)]  # fmt: skip
    for record in records:
        for i, node in enumerate(phases[record["stack"]].get("redis_nodes") or []):
            share = node.get("cpu_share")
            lines.append(
                _row([
                    record.get("redis_topology", record["stack"]), f"{i} ({node['node']})",
                    _num(node.get("cpu_ms_per_1k")),
                    _num(share * 100 if share is not None else None),
                    _num(node.get("commands"), "{:,}"),
                    _num(node.get("commands_per_frame"), "{:.2f}"),
                ])
            )  # fmt: skip
    lines += [
        "",
        "- Topologies: `single` is the stack's private redis-server; `shards:K` K private "
        "redis-servers the bench starts and gives to `up --redis` separated by commas; "
        "`cluster:N` is `up --redis-cluster N` (N masters, no replicas, sharded pub/sub). The "
        "same ours stack (workers, nginx) on each, started one after the other.",
        "- Per node: CPU of that `redis-server` process from `/proc` and its `INFO commandstats` "
        "calls over the phase (the meter's own INFO excluded). One room is one group, and a group "
        "lives on one shard or one cluster slot: a single room's traffic lands on one node "
        "whatever the topology; shards and a cluster spread *rooms*, not one room's fan-out.",
    ]
    return lines
