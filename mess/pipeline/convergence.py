"""Is the original network trained to convergence? ``final`` on validation data after the
stage-1 budget and after twice it.

Stage 1 is run again from its own output (``stage1.pt``) for as many epochs at the same peak
rate (a warm restart of the poly schedule), into ``convergence/stage1-double.pt``; then
``final``'s mIoU on the calibration split (the validation data of every setting; the test split
is never read) of ``stage1.pt`` (stage 2 leaves ``final`` and the backbone as they are, batch
norm statistics included) and of the doubled one. Only stage 1 is needed: a study of stage 1's
budget builds no heads (``run_build(..., until="stage1.pt")``). Both outputs are reused by
digest like the build's, in their own folder.
See docs/DESIGN.md, "Testing and benchmarks".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from mess.fileio import write_text_atomic
from mess.pipeline.build import build_digests, training_settings
from mess.pipeline.data import preset_split
from mess.pipeline.presets import Preset
from mess.pipeline.reuse import Stage, run_stages
from mess.pipeline.training import train_supernet

FOLDER = "convergence"
DOUBLE = "stage1-double.pt"
RESULT = "convergence.json"


def final_validation_miou(supernet: Path, preset: Preset) -> float:
    """``final``'s mIoU on the preset's calibration split."""
    from mess.nn import load_supernet
    from mess.nn.train.evaluation import evaluate

    dataset = preset_split(preset, "calibration")
    return evaluate(load_supernet(supernet), dataset, ["final"], batch_size=16)["final"]


def optimizer_steps(preset: Preset, epochs: int) -> int:
    """Optimizer steps of a training stage of ``epochs`` (the last partial batch dropped)."""
    return epochs * (preset.train_images // preset.batch_size)


def run_convergence(*, workdir: Path, preset: Preset, console: Console) -> dict[str, Any] | None:
    """``{"budget_miou", "double_miou", "budget_epochs", "double_epochs", "split", "images"}``
    for the build in ``workdir`` (:func:`mess.pipeline.run_build` first, at least as far as
    ``stage1.pt``); None when its ``stage1.pt`` is gone (a build trained elsewhere) and nothing
    was measured before."""
    folder = workdir / FOLDER
    stage1 = workdir / "stage1.pt"
    double, result = folder / DOUBLE, folder / RESULT
    digests = build_digests(preset)

    def train_again() -> None:
        if not stage1.exists():
            raise _NoStage1
        train_supernet(
            stage="stage1",
            supernet=stage1,
            output=double,
            epochs=preset.stage1_epochs,
            lr=preset.lr,
            resume="auto",
            **training_settings(preset),
        )

    def validate() -> None:
        if not stage1.exists():
            raise _NoStage1
        record = {
            "split": "calibration",
            "images": preset.calibration_images,
            "budget_epochs": preset.stage1_epochs,
            "double_epochs": 2 * preset.stage1_epochs,
            "budget_miou": final_validation_miou(stage1, preset),
            "double_miou": final_validation_miou(double, preset),
        }
        write_text_atomic(result, json.dumps(record, indent=1))

    try:
        run_stages(
            workdir=folder,
            stages=[
                Stage(
                    DOUBLE, ("stage1",), train_again, "train stage 1 again (twice the budget)", True
                ),
                Stage(RESULT, (), validate, "validate final (the budget vs twice it)"),
            ],
            settings={"stage1": digests["stage1.pt"]},
            console=console,
        )
    except _NoStage1:
        console.print(f"[yellow]no {stage1.name}[/]: the convergence check is not measured")
        return None
    return dict(json.loads(result.read_text()))


class _NoStage1(Exception):
    """The build's stage-1 checkpoint is gone (trained elsewhere): nothing to train on from."""
