"""``bench report``: runs of one scenario given ``--label`` each keep their files and section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from channels_scale.bench.command import execute
from channels_scale.bench.report import load_runs, write_doc
from channels_scale.bench.scenarios import BenchConfig
from channels_scale.cli import main

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "fanout.json"


def _save(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _sections(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("## ")]


def test_labelled_runs_of_one_scenario_each_get_a_section_and_files(tmp_path: Path) -> None:
    """A committed (unlabelled) fanout, two labelled ones and a stale copy of one of them."""
    base = json.loads(COMMITTED.read_text())
    big = {**base, "label": "1000-subs", "config": {**base["config"], "subs": 1000.0}}
    small = {**base, "label": "50-subs", "config": {**base["config"], "subs": 50.0}}
    stale = {**big, "started_at": "2020-01-01T00:00:00+00:00", "seconds": 1.0}
    _save(base, tmp_path / "a" / "fanout.json")
    _save(big, tmp_path / "a" / "fanout-1000-subs.json")
    _save(stale, tmp_path / "b" / "fanout-1000-subs.json")  # same stem, older: dropped
    _save(small, tmp_path / "b" / "fanout-50-subs.json")
    pages = []
    for order in (["a", "b"], ["b", "a"]):
        docs = load_runs([tmp_path / name for name in order])
        assert [d.get("label") for d in docs] == [None, "1000-subs", "50-subs"]
        page = tmp_path / "out" / "benchmarks.md"
        write_doc(docs, page)
        pages.append(page.read_text())
    assert pages[0] == pages[1]  # the order does not depend on where the files came from
    assert _sections(pages[0]) == ["## fanout", "## fanout (1000-subs)", "## fanout (50-subs)"]
    assets = tmp_path / "out" / "benchmarks"
    assert json.loads((assets / "fanout-1000-subs.json").read_text()) == big
    assert json.loads((assets / "fanout.json").read_text()) == base
    for stem in ("fanout", "fanout-1000-subs", "fanout-50-subs"):
        assert f"(benchmarks/{stem}-latency.png)" in pages[0]
        assert (assets / f"{stem}-latency.png").stat().st_size > 1000


def test_a_labelled_run_keeps_the_unlabelled_one_beside_it(
    tmp_path: Path, misbehaving: Any
) -> None:
    url = misbehaving("ok")
    out = tmp_path / "run"
    for subs, label in ((3, None), (4, "four-subs")):
        cfg = BenchConfig("fanout", url=url, subs=subs, msgs=20, rate=50.0, procs=1,
                          drain_s=1.0, out=out)  # fmt: skip
        doc, _ = execute(cfg, quiet=True, label=label)
        assert doc["stacks"][0]["ok"], doc["stacks"][0]["error"]
    labelled = json.loads((out / "fanout-four-subs.json").read_text())
    assert labelled["label"] == "four-subs"
    assert labelled["command"].endswith("--procs 1 --label four-subs")
    assert "label" not in json.loads((out / "fanout.json").read_text())
    assert (out / "fanout-four-subs.md").read_text().startswith("# fanout (four-subs)\n")
    page = tmp_path / "docs" / "benchmarks.md"
    assert main(["bench", "report", "--from", str(out), "--doc", str(page)]) == 0
    assert _sections(page.read_text()) == ["## fanout", "## fanout (four-subs)"]
