"""PNG charts of a bench run, drawn from its JSON document with matplotlib (Agg, no display).

- ``<scenario>-latency.png``: latency percentiles (p50 .. max, log scale) per stack; for
  ``saturate``, at each stack's highest rate held;
- ``saturate-rate.png``: deliveries/s received and p99 latency against deliveries/s offered;
- ``topology-<scenario>-nodes.png`` (``--redis-topology`` runs): Redis CPU and commands per frame
  of each Redis node, per topology.

A ``--redis-topology`` run's files start with ``topology-`` and a ``--label`` run's end with
``-<label>`` (:func:`doc_stem`), so they sit beside the usual run of the same scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from channels_scale.bench.figures import PERCENTILES


def _pct(fig: dict[str, Any], p: float) -> Any:
    return fig["latency"]["percentiles_ms"].get(f"{p:g}")


def main_figures(record: dict[str, Any]) -> dict[str, Any] | None:
    """The phase figures that represent a stack: its only phase, or saturate's best held step."""
    phases = record.get("phases") or []
    if not phases:
        return None
    best = (record.get("headline") or {}).get("max_rate")
    if best is not None:
        for phase in phases:
            if phase["rate"] == best:
                return dict(phase["figures"])
    return dict(phases[-1]["figures"])


def doc_stem(doc: dict[str, Any]) -> str:
    """The file name stem of a run: its scenario, ``topology-<scenario>`` for topology runs, then
    ``-<label>`` for a run given ``--label`` (so several runs of one scenario sit side by side)."""
    topologies = doc.get("config", {}).get("redis_topologies")
    label = doc.get("label")
    return (
        ("topology-" if topologies else "") + str(doc["scenario"]) + (f"-{label}" if label else "")
    )


def main_phase(record: dict[str, Any]) -> dict[str, Any] | None:
    """The phase that represents a stack (see :func:`main_figures`), with its per-node figures."""
    phases = record.get("phases") or []
    best = (record.get("headline") or {}).get("max_rate")
    chosen = [p for p in phases if best is not None and p["rate"] == best] or phases[-1:]
    return dict(chosen[0]) if chosen else None


def charts(doc: dict[str, Any], out: Path) -> dict[str, str]:
    """Write the PNG charts of ``doc`` into ``out``; returns title -> file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenario = doc["scenario"]
    made: dict[str, str] = {}
    ok = [r for r in doc["stacks"] if r.get("ok") and main_figures(r)]
    if scenario not in ("idle", "clientlib") and ok:
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        labels = [("max" if p >= 100 else f"p{p:g}") for p in PERCENTILES]
        for record in ok:
            f = main_figures(record) or {}
            values = [_pct(f, p) for p in PERCENTILES]
            ax.plot(
                labels,
                [v if v is not None else float("nan") for v in values],
                marker="o",
                label=record["stack"],
            )
        ax.set_yscale("log")
        ax.set_ylabel("latency from scheduled send (ms, log)")
        ax.set_title(
            f"{scenario}: latency percentiles"
            + (" at the highest rate held" if scenario == "saturate" else "")
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        name = f"{doc_stem(doc)}-latency.png"
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        made["latency percentiles per stack"] = name
    if doc.get("config", {}).get("redis_topologies") and ok:
        made.update(_nodes_chart(doc, out, plt))
    if scenario == "saturate" and ok:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
        top, bottom = 0.0, float("inf")
        for record in ok:
            phases = sorted(record.get("phases") or [], key=lambda p: p["rate"])
            offered = [p["figures"]["offered_deliveries_per_s"] for p in phases]
            got = [p["figures"]["deliveries_per_s"] for p in phases]
            p99 = [_pct(p["figures"], 99) or float("nan") for p in phases]
            top = max([top, *offered])
            bottom = min([bottom, *offered])
            left.plot(offered, got, marker="o", label=record["stack"])
            right.plot(offered, p99, marker="o", label=record["stack"])
        left.plot([bottom, top], [bottom, top], linestyle=":", color="grey", label="offered")
        left.set_xscale("log")
        left.set_yscale("log")
        right.set_xscale("log")
        left.set_xlabel("deliveries/s offered (log)")
        left.set_ylabel("deliveries/s received (log)")
        left.set_title("saturate: throughput")
        right.axhline(doc["config"]["bound_ms"], linestyle="--", color="red", label="bound")
        right.set_yscale("log")
        right.set_xlabel("deliveries/s offered (log)")
        right.set_ylabel("p99 latency (ms, log)")
        right.set_title("saturate: p99 against offered rate")
        for ax in (left, right):
            ax.grid(True, alpha=0.3)
            ax.legend()
        fig.tight_layout()
        name = f"{doc_stem(doc)}-rate.png"
        fig.savefig(out / name)
        plt.close(fig)
        made["deliveries/s against offered rate"] = name
    return made


def _nodes_chart(doc: dict[str, Any], out: Path, plt: Any) -> dict[str, str]:
    """Bars per Redis node, grouped by topology: CPU ms per 1,000 deliveries, commands/frame."""
    fig, (cpu_ax, cmd_ax) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    labels: list[str] = []
    cpu: list[float] = []
    cmds: list[float] = []
    colors: list[str] = []
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, record in enumerate(r for r in doc["stacks"] if r.get("ok")):
        phase = main_phase(record) or {}
        for n, node in enumerate(phase.get("redis_nodes") or []):
            labels.append(f"{record.get('redis_topology', record['stack'])}\nnode {n}")
            cpu.append(node.get("cpu_ms_per_1k") or 0.0)
            cmds.append(node.get("commands_per_frame") or 0.0)
            colors.append(palette[i % len(palette)])
    if not labels:
        plt.close(fig)
        return {}
    for ax, values, title in (
        (cpu_ax, cpu, "Redis CPU per node (ms per 1,000 deliveries)"),
        (cmd_ax, cmds, "Redis commands per frame, per node"),
    ):
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), labels, fontsize=7)
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"{doc['scenario']}: the ours stack on each Redis topology")
    fig.tight_layout()
    name = f"{doc_stem(doc)}-nodes.png"
    fig.savefig(out / name)
    plt.close(fig)
    return {"Redis CPU and commands per node, per topology": name}
