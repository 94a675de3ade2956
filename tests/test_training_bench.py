"""bench.training's scheme study, on the micro preset (plumbing: nothing in it means anything)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import training, training_schemes


@pytest.mark.slow  # a micro build and two more trainings: about 40 s on 2 cores
def test_schemes_start_from_one_stage1_and_are_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    training.main(["--preset", "micro", "--workdir", str(tmp_path), "--json"])
    study = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["scheme"] for r in study["rows"]] == list(training_schemes.SCHEMES)
    record = study["per_seed"][0]
    assert record["split"] == "calibration"
    # two-stage freezes the backbone and final: its final is the original network's
    two_stage = record["schemes"]["two-stage"]
    assert two_stage["final"] == pytest.approx(record["original"], abs=1e-9)
    assert study["rows"][0]["final_minus_original_pp"] == pytest.approx(0.0, abs=1e-7)
    # heads-only trains the same heads on the same frozen backbone: final untouched too
    assert record["schemes"]["heads-only"]["final"] == pytest.approx(record["original"])
    assert set(two_stage["exits"]) == set(record["schemes"]["end-to-end"]["exits"])
    made = (tmp_path / "schemes" / "end-to-end.pt").stat().st_mtime_ns
    training.main(["--preset", "micro", "--workdir", str(tmp_path), "--json"])
    assert (tmp_path / "schemes" / "end-to-end.pt").stat().st_mtime_ns == made
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"] == study["rows"]


def _record(original: float, finals: dict[str, float], exits: dict[str, float]) -> dict:
    return {
        "original": original,
        "schemes": {s: {"final": finals[s], "exits": {"a": exits[s]}} for s in finals},
    }


def test_the_claim_needs_final_kept_and_better_exits_than_both_others() -> None:
    met = _record(
        0.5,
        {"two-stage": 0.5, "end-to-end": 0.49, "heads-only": 0.5},
        {"two-stage": 0.45, "end-to-end": 0.44, "heads-only": 0.40},
    )
    assert training_schemes.summarize([met])["claim"] == {
        "keeps_final": True,
        "better_exits": True,
        "met": True,
    }
    worse = _record(
        0.5,
        {"two-stage": 0.5, "end-to-end": 0.52, "heads-only": 0.5},
        {"two-stage": 0.45, "end-to-end": 0.46, "heads-only": 0.40},
    )
    claim = training_schemes.summarize([met, worse])["claim"]
    assert claim["keeps_final"] and not claim["better_exits"] and not claim["met"]
    lost = _record(
        0.5,
        {"two-stage": 0.498, "end-to-end": 0.49, "heads-only": 0.5},
        {"two-stage": 0.45, "end-to-end": 0.44, "heads-only": 0.40},
    )
    assert not training_schemes.summarize([lost])["claim"]["keeps_final"]  # -0.2 pp
