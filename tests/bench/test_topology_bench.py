"""``bench --redis-topology``: the option, the meter per Redis node, the report's tables and chart.

The topologies themselves (K shards, a private cluster) are started by code tested in
tests/stack/test_up_topologies.py; here the meter runs on two real redis-servers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from channels_scale.bench.charts import charts, doc_stem
from channels_scale.bench.costs import CostMeter, redis_node_of
from channels_scale.bench.figures import ServerCosts, redis_node_figures
from channels_scale.bench.report import markdown
from channels_scale.bench.topology_report import topology_tables
from channels_scale.cli import main
from channels_scale.stack.topology import parse_topology
from tests.bench.test_figures import _figures
from tests.conftest import RedisProcess


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_parse_topology() -> None:
    assert parse_topology("single") == ("single", 1)
    assert parse_topology("shards:3") == ("shards", 3)
    assert parse_topology("cluster:5") == ("cluster", 5)
    for bad in ("cluster:2", "shards:1", "single:2", "ring:3", "shards:x"):
        with pytest.raises(ValueError):
            parse_topology(bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "fanout", "--redis-topology", "cluster:2"], "needs at least 3 masters"),
        (["bench", "idle", "--redis-topology", "shards:3"], "goes with fanout, saturate or rooms"),
    ],
)
def test_bad_topology_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert _exit_code([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_meter_splits_cpu_and_commands_by_node(
    shared_redis: RedisProcess, redis_server: RedisProcess
) -> None:
    nodes = [shared_redis, redis_server]
    assert all(n.proc is not None for n in nodes)
    pids = [n.proc.pid for n in nodes if n.proc is not None]
    assert [redis_node_of(pid) for pid in pids] == [f"127.0.0.1:{n.port}" for n in nodes]
    meter = CostMeter(pids, None, [n.url for n in nodes])
    try:
        meter.start()
        with redis.Redis(port=redis_server.port) as client:
            for i in range(300):
                client.set(f"topology-bench:{i}", "x" * 100)
        with redis.Redis(port=shared_redis.port) as client:
            client.ping()
        costs = meter.stop()
    finally:
        meter.close()
    assert costs.redis_nodes is not None
    busy, quiet = (costs.redis_nodes[f"127.0.0.1:{n.port}"] for n in (redis_server, shared_redis))
    assert busy["by_command"].get("set") == 300 and busy["commands"] >= 300
    assert quiet["commands"] < 5 and "set" not in quiet["by_command"]
    assert costs.redis_commands is not None and costs.redis_commands["set"] == 300  # the sum
    assert busy["cpu_s"] is not None and quiet["cpu_s"] is not None


def _topology_doc(tmp_path: Path) -> dict[str, object]:
    """A fanout document of two topologies, its figures built by the bench's own functions."""
    stacks = []
    for topology, nodes in (("single", {"a:1": 600}), ("shards:3", {"a:1": 600, "b:2": 3})):
        figures = _figures(lost=0, p99_us=5000)
        figures.costs = ServerCosts(
            cpu_s=0.5,
            wall_s=2.0,
            redis_commands={"evalsha": sum(nodes.values())},
            redis_nodes={
                n: {"cpu_s": 0.02, "commands": c, "by_command": {}} for n, c in nodes.items()
            },
        )
        stacks.append(
            {
                "stack": f"ours/{topology}",
                "redis_topology": topology,
                "ok": True,
                "phases": [
                    {"label": "fanout", "rate": 50, "figures": figures.to_json(),
                     "redis_nodes": redis_node_figures(figures)}
                ],
            }
        )  # fmt: skip
    machine = {"cpu": "x", "cores": 2, "memory_gib": 1, "kernel": "k", "load_average": [0.0],
               "fd_limit": 1024}  # fmt: skip
    return {
        "schema": 1, "scenario": "fanout", "command": "channels-scale bench fanout "
        "--redis-topology single,shards:3", "started_at": "now", "seconds": 1.0,
        "machine": machine, "config": {"redis_topologies": ["single", "shards:3"],
        "stacks": ["ours"], "bound_ms": 100.0}, "stacks": stacks,
    }  # fmt: skip


def test_report_tables_and_chart_per_node(tmp_path: Path) -> None:
    doc = _topology_doc(tmp_path)
    assert doc_stem(doc) == "topology-fanout"
    sent = _figures(lost=0, p99_us=5000).sent
    lines = topology_tables(doc)
    node_rows = [line for line in lines if line.startswith("| shards:3 | ")]
    assert len(node_rows) == 3  # the topology row and its two nodes
    assert f"| {600 / sent:.2f} |" in node_rows[1] and f"| {3 / sent:.2f} |" in node_rows[2]
    assert f"| {600 / 603:.0%} |" in node_rows[0]  # the busiest node's share of the commands
    images = charts(doc, tmp_path)
    assert images["Redis CPU and commands per node, per topology"] == "topology-fanout-nodes.png"
    assert (tmp_path / "topology-fanout-nodes.png").stat().st_size > 1000
    assert (tmp_path / "topology-fanout-latency.png").exists()  # beside a plain fanout-latency
    text = markdown(json.loads(json.dumps(doc)), images)
    assert text.startswith("## fanout on Redis topologies")
