"""``channels-scale bench`` command line: bad input exits 2 with one clear line."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from channels_scale.bench.command import register
from channels_scale.cli import main
from channels_scale.net import free_port


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "stampede"], "invalid choice: 'stampede'"),
        (["bench", "fanout", "--subs", "-3"], "--subs: must be at least 1, not -3"),
        (["bench", "fanout", "--rate", "0"], "--rate: must be above 0"),
        (["bench", "saturate", "--bound-ms", "-1"], "--bound-ms: must be above 0"),
        (["bench", "fanout", "--duration", "nan"], "--duration: must be a finite number"),
        (["bench", "fanout", "--stacks", "ours,nginx"], "unknown stack 'nginx'"),
        (["bench", "fanout", "--stacks", "ours", "--url", "ws://127.0.0.1:1"], "not allowed"),
        (["bench", "fanout", "--label", "Big Run"], "--label: takes up to 40 lowercase letters"),
        (["bench", "fanout", "--label=-x"], "--label: takes up to 40 lowercase letters"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert message in err


def test_unreachable_url_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    assert _exit_code(["bench", "fanout", "--url", url, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "cannot reach --url" in err[0]
    assert not (tmp_path / "fanout.json").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ws://10.1.2.3:8000", "not on loopback"),
        ("http://127.0.0.1:8000", "must look like ws://"),
        ("ws://127.0.0.1:8000/ws/broadcast/x/", "takes no path"),
    ],
)
def test_bad_url_exits_2(url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["bench", "fanout", "--url", url]) == 2
    assert message in capsys.readouterr().err


def test_register_adds_bench_with_a_func() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["bench", "fanout", "--stacks", "ceiling,recipe", "--subs", "7"])
    assert args.stacks == ["ceiling", "recipe"]
    assert args.subs == 7
    assert callable(args.func)


def test_report_without_json_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _exit_code(["bench", "report", "--from", str(tmp_path)]) == 2
    assert "no bench JSON files" in capsys.readouterr().err


def test_report_renders_doc_from_json(tmp_path: Path, misbehaving: object) -> None:
    from channels_scale.bench.command import execute
    from channels_scale.bench.scenarios import BenchConfig

    url = misbehaving("ok")  # type: ignore[operator]
    cfg = BenchConfig("fanout", url=url, subs=3, msgs=20, rate=50.0, procs=1, drain_s=1.0,
                      out=tmp_path / "run")  # fmt: skip
    execute(cfg, quiet=True)
    doc = tmp_path / "docs" / "benchmarks.md"
    assert main(["bench", "report", "--from", str(tmp_path / "run"), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "## fanout" in text
    assert "channels-scale bench fanout --url" in text
    assert "![latency percentiles per stack](benchmarks/fanout-latency.png)" in text
    assert (tmp_path / "docs" / "benchmarks" / "fanout-latency.png").stat().st_size > 1000
    copied = json.loads((tmp_path / "docs" / "benchmarks" / "fanout.json").read_text())
    assert copied["stacks"][0]["ok"]
    shutil.rmtree(tmp_path / "run")
