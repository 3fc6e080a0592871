"""The connections scenario for real: ``channels-scale up`` (ours, nginx), a connect storm from
several loopback source addresses, then a broadcast every connection must receive."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from channels_scale.bench import plan
from channels_scale.bench.command import execute
from channels_scale.bench.scenarios import BenchConfig


def test_300_connections_from_3_sources_through_up_and_nginx_lose_nothing(
    tiny: Callable[..., BenchConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 connections per source address (the bench spreads from 1,000 on, 1,000 per address)
    monkeypatch.setattr(plan, "SPREAD_THRESHOLD", 100)
    monkeypatch.setattr(plan, "CONNECTIONS_PER_SOURCE", 100)
    cfg = tiny("connections", stacks=["ours"], clients=300, rate=5.0, duration=2.0, drain_s=5.0)
    doc, _ = execute(cfg, quiet=True)
    (record,) = doc["stacks"]
    assert record["ok"], record["error"]
    c = record["connections"]
    assert c["sources"] == 3
    assert c["opened"] == c["asked"] == 300
    assert c["handshake_errors"] == 0
    assert c["connect_latency_ms"]["99"] is not None
    assert c["rss_per_connection_bytes"] is not None  # the workers' pids are metered
    assert c["storm_server_cpu_ms_per_connection"] > 0
    (phase,) = record["phases"]
    f = phase["figures"]
    assert f["sent"] == 10
    assert f["expected"] == f["deliveries"] == 300 * 10
    assert f["lost"] == 0
    assert f["small_sample"] is True  # 10 frames: flagged, and said so in the report
    assert c["held_at_end"] == 300
    # the warm-up: 10 connections in rooms of their own, 10 frames each, outside the figures
    assert record["warmup"]["sent"] == 100
    assert f["stale"] == 0
    assert "| ours | 300 | 300 | 0 |" in (cfg.out / "connections.md").read_text()
