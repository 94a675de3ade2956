"""``mess-agent bench``: the agent's protocol on one model, with the precision it reached."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from profilers.cli import app
from tests.profilers.test_sharing import _part


def test_bench_reports_runs_and_precision(tmp_path):
    model = tmp_path / "part.onnx"
    model.write_bytes(_part(1.0))
    result = CliRunner().invoke(app, ["bench", str(model), "--tier", "smoke", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["runs"] == 8 and report["halfwidth_pct"] >= 0
    assert report["context"]["rule"]["stop"] == "fixed"
    text = CliRunner().invoke(app, ["bench", str(model), "--tier", "smoke"])
    assert text.exit_code == 0 and "% at 95 %" in text.output and "8 runs" in text.output


def test_an_unknown_tier_is_refused(tmp_path):
    model = tmp_path / "part.onnx"
    model.write_bytes(_part(1.0))
    result = CliRunner().invoke(app, ["bench", str(model), "--tier", "fast"])
    assert result.exit_code == 2
    assert "quick-fixed" in result.output  # the fixed tiers are offered too


def test_the_speed_probe_interval_reaches_the_agent(monkeypatch):
    from profilers import agent

    seen = []
    monkeypatch.setattr(agent.Agent, "run", lambda self, **kw: seen.append(self.config) or 0)
    args = ["--server", "http://mess.test", "--token", "t", "--once"]
    assert CliRunner().invoke(app, [*args, "--speed-probe-seconds", "0"]).exit_code == 0
    assert CliRunner().invoke(app, args).exit_code == 0
    assert [c.speed_probe_seconds for c in seen] == [0.0, 30.0]
    refused = CliRunner().invoke(app, [*args, "--speed-probe-seconds", "-1"])
    assert refused.exit_code == 2
