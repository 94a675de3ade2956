"""bench/paper_scale.py: its arguments and table fast, the whole small chain as a slow test."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from bench.paper_scale import Step, main, parse_size, run, table


def test_sizes_parse_and_bad_ones_are_refused():
    assert parse_size("64") == (64, 64)
    assert parse_size("512x1024") == (512, 1024)
    for bad in ("8", "axb", "64x8"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


def test_run_reports_the_peak_rss_of_the_child_and_its_failures():
    code = "b = bytearray(200 << 20); print('done')"
    out, wall, rss = run([sys.executable, "-c", code])
    assert out.strip() == "done" and wall > 0
    assert rss > 200  # MB: the child's own peak, not this process's
    with pytest.raises(RuntimeError, match="failed \\(3\\)"):
        run([sys.executable, "-c", "raise SystemExit(3)"])


def test_table_lists_every_step_and_the_total():
    steps = [Step("export", 1.5, 900), Step("push", 2.0, 60, 300)]
    text = table(steps, {"bundle_mb": 12.5})
    assert "| export | 1.5 | 900 | - |" in text
    assert "| push | 2.0 | 60 | 300 |" in text
    assert "**3.5**" in text and "bundle_mb: 12.5" in text


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 2.5 CPU minutes; much longer on a loaded machine
def test_the_small_chain_runs_end_to_end(tmp_path: Path):
    out = tmp_path / "result.json"
    args = ["--model", "torchvision:resnet18", "--space", "tiny", "--size", "64"]
    main(
        [*args, "--tier", "smoke", "--budget-ms", "1000", "--compare-tier", "smoke"]
        + ["--json", str(out)]
    )
    result = json.loads(out.read_text())
    names = [s["name"] for s in result["steps"]]
    assert names[:3] == ["convert", "calibrate", "export"]
    assert "push" in names and "search (pareto front)" in names
    assert all(s["wall_s"] > 0 for s in result["steps"])
    assert result["facts"]["parts"] > 0 and result["facts"]["front_points"] > 0
    assert result["facts"]["timed"] > 0
    compare = result["facts"]["compare"]  # a second smoke profile against the first
    assert compare["answered"] > 0 and compare["second_precision"]["timed"] > 0
    assert result["facts"]["answer_exits"] >= 0
