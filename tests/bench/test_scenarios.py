"""Tiny bench runs against servers that misbehave on purpose: the figures must show it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from channels_scale.bench import delivery
from channels_scale.bench.command import execute
from channels_scale.bench.scenarios import BenchConfig

Tiny = Callable[..., BenchConfig]


def _fanout(doc: dict[str, Any]) -> dict[str, Any]:
    (record,) = doc["stacks"]
    assert record["ok"], record["error"]
    (phase,) = record["phases"]
    figures: dict[str, Any] = phase["figures"]
    return figures


def test_drop_every_10th_frame_is_10_percent_loss(
    misbehaving: Callable[[str], str], tiny: Tiny
) -> None:
    doc, _ = execute(tiny("fanout", url=misbehaving("drop")), quiet=True)
    f = _fanout(doc)
    assert f["sent"] == 100
    assert f["expected"] == 4 * 100
    assert f["lost"] == 4 * 10
    assert f["loss_ratio"] == pytest.approx(0.10)
    assert f["duplicated"] == 0
    assert f["reordered"] == 0


def test_delay_of_50_ms_shows_in_p50(misbehaving: Callable[[str], str], tiny: Tiny) -> None:
    doc, _ = execute(tiny("fanout", url=misbehaving("delay")), quiet=True)
    f = _fanout(doc)
    assert f["lost"] == 0
    p50 = f["latency"]["percentiles_ms"]["50"]
    assert 50 <= p50 < 150


def test_duplicates_are_counted_not_lost(misbehaving: Callable[[str], str], tiny: Tiny) -> None:
    doc, _ = execute(tiny("fanout", url=misbehaving("dup")), quiet=True)
    f = _fanout(doc)
    assert f["duplicated"] == 4 * 10
    assert f["lost"] == 0
    assert f["deliveries"] == 4 * 100
    assert f["received"] == 4 * 110


def test_reorders_are_counted(misbehaving: Callable[[str], str], tiny: Tiny) -> None:
    doc, _ = execute(tiny("fanout", url=misbehaving("reorder")), quiet=True)
    f = _fanout(doc)
    assert f["reordered"] == 4 * 10
    assert f["lost"] == 0
    assert f["duplicated"] == 0


def test_rooms_keep_order_per_room(misbehaving: Callable[[str], str], tiny: Tiny) -> None:
    cfg = tiny("rooms", url=misbehaving("ok"), clients=6, room_size=3, rate=20.0, duration=1.0)
    doc, _ = execute(cfg, quiet=True)
    f = _fanout(doc)
    assert f["sent"] == 6 * 20
    assert f["expected"] == 6 * 20 * 3  # every frame reaches the 3 members of its room
    assert f["lost"] == 0
    assert f["reordered"] == 0


def test_ceiling_fanout_writes_json_markdown_png(tiny: Tiny) -> None:
    cfg = tiny("fanout", stacks=["ceiling"], procs=2)
    doc, files = execute(cfg, quiet=True)
    f = _fanout(doc)
    assert f["lost"] == 0
    assert f["server_cpu_ms_per_1k"] is not None  # the ceiling's pid is metered
    assert len(f["clients"]) == 2
    names = {p.name for p in files}
    assert names == {"fanout.json", "fanout.md", "fanout-latency.png"}
    assert json.loads((cfg.out / "fanout.json").read_text())["scenario"] == "fanout"
    assert "| ceiling |" in (cfg.out / "fanout.md").read_text()
    assert "†" not in (cfg.out / "fanout.md").read_text()  # 100 frames: not a small sample


def test_warm_up_frames_are_not_in_the_figures(
    misbehaving: Callable[[str], str], tiny: Tiny
) -> None:
    doc, _ = execute(tiny("fanout", url=misbehaving("slowfirst")), quiet=True)
    (record,) = doc["stacks"]
    warmup = record["warmup"]
    # the premise: the server's first frame stalled 400 ms, and the warm-up took it
    assert warmup["sent"] == 10
    assert warmup["max_ms"] >= 400
    f = _fanout(doc)
    assert f["sent"] == 100
    assert f["deliveries"] == 4 * 100
    assert f["stale"] == 0  # no warm-up frame leaked into the measured phase
    assert f["latency"]["percentiles_ms"]["100"] < 300


def test_a_tiny_sample_is_flagged_in_figures_and_report(
    misbehaving: Callable[[str], str], tiny: Tiny
) -> None:
    cfg = tiny("fanout", url=misbehaving("ok"), msgs=10)
    doc, _ = execute(cfg, quiet=True)
    f = _fanout(doc)
    assert f["sent"] == 10
    assert f["small_sample"] is True
    text = (cfg.out / "fanout.md").read_text()
    assert "†" in text
    assert "url fanout (10 frames)" in text


def test_saturate_steps_up_and_reports_the_highest_rate_held(
    tiny: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "SATURATE_MAX_STEPS", 2)
    # 0.5 s at 50/s would be 25 frames, a p99 of one frame: steps last 2 s and 100 frames at least
    cfg = tiny("saturate", stacks=["ceiling"], rate=50.0, duration=0.5)
    doc, files = execute(cfg, quiet=True)
    (record,) = doc["stacks"]
    assert [p["rate"] for p in record["phases"]] == [50.0, 100.0]
    assert [p["figures"]["sent"] for p in record["phases"]] == [100, 200]
    assert not any(p["figures"]["small_sample"] for p in record["phases"])
    assert record["warmup"]["sent"] == 10
    assert record["headline"]["max_rate"] == 100.0
    assert record["headline"]["max_deliveries_per_s"] == 100.0 * 4
    assert "saturate-rate.png" in {p.name for p in files}
    # Per step, the busiest process of each role (the ceiling: one worker process) and of the
    # load generator, as shares of a core; the per-process CPU adds up to the stack's.
    for p in record["phases"]:
        shares = p["busiest_cpu"]
        assert 0 <= shares["worker"] < 1.5 and 0 <= shares["client"] < 1.5
        assert sum(p["figures"]["costs"]["cpu_by_process"].values()) == pytest.approx(
            p["figures"]["costs"]["cpu_s"]
        )
    assert "busiest worker (% of a core)" in (cfg.out / "saturate.md").read_text()


def test_saturate_with_a_slow_server_holds_nothing(
    misbehaving: Callable[[str], str], tiny: Tiny
) -> None:
    cfg = tiny("saturate", url=misbehaving("delay"), rate=50.0, duration=1.0, bound_ms=20.0)
    doc, _ = execute(cfg, quiet=True)
    (record,) = doc["stacks"]
    assert len(record["phases"]) == 1
    assert record["headline"]["max_rate"] is None


def test_idle_holds_connections(misbehaving: Callable[[str], str], tiny: Tiny) -> None:
    cfg = tiny("idle", url=misbehaving("ok"), clients=20, duration=1.0)
    doc, _ = execute(cfg, quiet=True)
    (record,) = doc["stacks"]
    assert record["ok"], record["error"]
    assert record["idle"]["held_at_end"] == 20
    assert record["idle"]["handshake_errors"] == 0
    assert record["idle"]["rss_per_connection_bytes"] is None  # --url: no server pids


def test_churn_counts_connects(misbehaving: Callable[[str], str], tiny: Tiny) -> None:
    cfg = tiny("churn", url=misbehaving("ok"), rate=20.0, duration=1.0)
    doc, _ = execute(cfg, quiet=True)
    (record,) = doc["stacks"]
    assert record["ok"], record["error"]
    assert record["churn"]["opened"] == record["churn"]["asked"] == 10
    assert record["churn"]["failed"] == 0
    assert record["phases"][0]["figures"]["lost"] == 0
