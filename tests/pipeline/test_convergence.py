"""``mess.pipeline.convergence``: an under-trained build is flagged not converged (stage 1
alone is enough: no heads are trained), the check is reused by digest, and a build without its
stage-1 checkpoint is reported as not measured."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from bench.headline_stats import regime_checks
from mess.pipeline import MICRO, build_stages, run_stages
from mess.pipeline.build import digest_settings
from mess.pipeline.convergence import FOLDER, optimizer_steps, run_convergence

pytest.importorskip("torch")

QUIET = Console(quiet=True)


def test_an_under_trained_build_is_not_converged(tmp_path: Path) -> None:
    # One epoch at a high rate: a second one still moves final's validation mIoU by pp.
    preset = dataclasses.replace(MICRO, lr=0.1)
    stages = build_stages(workdir=tmp_path, preset=preset)
    settings = digest_settings(preset)
    run_stages(workdir=tmp_path, stages=stages, settings=settings, console=QUIET, until="stage1.pt")
    assert not (tmp_path / "supernet.pt").exists()
    result = run_convergence(workdir=tmp_path, preset=preset, console=QUIET)
    assert result is not None
    assert (result["split"], result["images"]) == ("calibration", preset.calibration_images)
    assert (result["budget_epochs"], result["double_epochs"]) == (1, 2)
    regime = regime_checks(
        exits=[],
        mious=[],
        final_miou=result["budget_miou"],
        convergence=result,
        original_steps=optimizer_steps(preset, preset.stage1_epochs),
        head_steps=optimizer_steps(preset, preset.stage2_epochs),
    )
    delta = regime["convergence_delta_pp"]
    assert delta == pytest.approx(100 * (result["double_miou"] - result["budget_miou"]))
    assert abs(delta) > 0.5 and not regime["converged"]
    assert regime["original_steps"] == 32 // 8

    # measured once: the doubled checkpoint and the result are reused
    double = (tmp_path / FOLDER / "stage1-double.pt").stat().st_mtime_ns
    assert run_convergence(workdir=tmp_path, preset=preset, console=QUIET) == result
    assert (tmp_path / FOLDER / "stage1-double.pt").stat().st_mtime_ns == double

    # trained elsewhere: supernet.pt travels without stage1.pt, and nothing was measured
    run_stages(workdir=tmp_path, stages=stages[:3], settings=settings, console=QUIET)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("supernet.pt", "digests.json"):
        shutil.copy(tmp_path / name, elsewhere / name)
    assert run_convergence(workdir=elsewhere, preset=preset, console=QUIET) is None
