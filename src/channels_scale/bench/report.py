"""Bench outputs, all derived from one JSON document per run.

- ``<scenario>.json``: every raw figure (the source of truth; Markdown and PNG are built from it);
- ``<scenario>.md``: the table, with ratios against ``recipe``, ``socketio`` and ``ceiling``;
- ``<scenario>-latency.png``: latency percentiles per stack;
- ``saturate-rate.png``: deliveries/s received against deliveries/s offered, per stack.

A run given ``--label L`` names its files ``<scenario>-L.*`` (:func:`~.charts.doc_stem`), so several
runs of one scenario (e.g. fanout with 200 and with 1,000 subscribers) are kept side by side, each
its own section of the page.

``channels-scale bench report --from DIR`` re-renders these from the JSON files in ``DIR`` and
writes ``docs/benchmarks.md`` (the JSON and PNG files are copied next to it, in ``benchmarks/``).
This module assembles the pages and files; the tables are built by :mod:`.tables`, the prose
(introduction, notes) by :mod:`.notes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from channels_scale.bench.charts import charts, doc_stem
from channels_scale.bench.notes import DOC_INTRO, notes
from channels_scale.bench.tables import scenario_tables
from channels_scale.bench.topology_report import is_topology_doc

SCHEMA = 1
ORDER = ("fanout", "saturate", "rooms", "churn", "idle", "connections", "clientlib")

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


# --------------------------------------------------------------------------- page


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
    if doc.get("label"):
        title += f" ({doc['label']})"
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
    lines += scenario_tables(doc)
    lines += ["", *notes(doc)]
    for title, path in (images or {}).items():
        lines += ["", f"![{title}]({path})"]
    return "\n".join(lines) + "\n"


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
    """Every bench JSON document in ``sources`` (files or directories), in :data:`ORDER`.

    Runs of one scenario follow each other: the unlabelled one, then those given ``--label`` in
    the labels' order. Of documents with the same file stem (:func:`doc_stem`: the same scenario
    and label, e.g. a fresh run beside its committed copy) only the newest is kept, since they
    would be written to the same JSON file.
    """
    newest: dict[str, dict[str, Any]] = {}
    for source in sources:
        files = sorted(source.glob("*.json")) if source.is_dir() else [source]
        for path in files:
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("schema") == SCHEMA and "scenario" in doc:
                stem = doc_stem(doc)
                if stem not in newest or _started(doc) >= _started(newest[stem]):
                    newest[stem] = doc
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(
        newest.values(),
        key=lambda d: (rank.get(d["scenario"], 99), d.get("label") or "", _started(d)),
    )


def _started(doc: dict[str, Any]) -> str:
    return str(doc.get("started_at", ""))


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
