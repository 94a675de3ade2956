"""Training schemes in the headline's regime: what to do with the steps after stage 1.

Every scheme starts from the same converged original network, the headline build's
``stage1.pt`` (backbone and ``final`` trained until twice the budget no longer helps, the
lightest exits sampled along; :mod:`bench.headline` checks the convergence), and gets the same
optimizer steps after it, the preset's stage 2 (``stage2_epochs`` at ``stage2_peak_lr``):

- ``two-stage`` (MESS): the backbone frozen, every head trained with positive-filtering
  distillation from ``final``: the build's own ``supernet.pt``;
- ``end-to-end``: backbone, ``final`` and every head trained jointly
  (``CE(final) + mean(CE(exits))``), the multi-exit networks' usual recipe (SDN, ADP-C);
- ``heads-only``: the backbone frozen, the heads trained on the labels alone (no distillation).

So all three have had the same total optimizer steps from the same random init. Each is
measured on the calibration split (the validation data of every setting; the test split
belongs to the headline's final measurement), for training seeds ``0..K-1`` (each its own
headline build: ``python -m bench.headline --preset small --seeds K --build-only`` makes them,
and this module builds what is missing the same way). The paper's claim is met when two-stage
keeps ``final``'s accuracy (within ``KEEP_PP`` of the original network) and its early exits
are better on average than each other scheme's, in the mean over seeds.

Outputs are reused by digest (:mod:`mess.pipeline.reuse`) in ``<build>/schemes/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench._common import seed_workdir
from mess.fileio import write_text_atomic
from mess.pipeline import Preset, run_build
from mess.pipeline.build import build_digests, training_settings
from mess.pipeline.data import preset_split
from mess.pipeline.reuse import Stage, run_stages
from mess.pipeline.training import train_supernet

SCHEMES = ("two-stage", "end-to-end", "heads-only")
FOLDER = "schemes"
RESULT = "schemes.json"
# How far below the original network two-stage's ``final`` may be and still "keep" it, in pp.
KEEP_PP = 0.1


def validation_mious(supernet: Path, preset: Preset, *, exits: bool = True) -> dict[str, float]:
    """``final``'s mIoU on the preset's calibration split, and every early exit's unless
    ``exits`` is False."""
    from mess.nn import load_supernet
    from mess.nn.train.evaluation import evaluate

    sn = load_supernet(supernet)
    dataset = preset_split(preset, "calibration")
    chosen = [*sn.early_exit_ids, "final"] if exits else ["final"]
    return dict(evaluate(sn, dataset, chosen, batch_size=16))


def run_seed(workdir: Path, preset: Preset, console: Console) -> dict[str, Any]:
    """The three schemes of one build (``run_build`` first): ``{"original", "schemes": {name:
    {"final", "exits": {exit: mIoU}}}, "steps"}``, reused by digest."""
    run_build(workdir=workdir, preset=preset, console=console)
    folder = workdir / FOLDER
    stage1, two_stage = workdir / "stage1.pt", workdir / "supernet.pt"
    e2e, heads = folder / "end-to-end.pt", folder / "heads-only.pt"
    common = training_settings(preset)
    after = dict(epochs=preset.stage2_epochs, lr=preset.stage2_peak_lr, resume="auto", **common)

    def end_to_end() -> None:
        train_supernet(stage="stage1", supernet=stage1, output=e2e, joint=True, **after)

    def heads_only() -> None:
        train_supernet(stage="stage2", supernet=stage1, output=heads, distill_weight=0.0, **after)

    def measure() -> None:
        record = {
            "split": "calibration",
            "images": preset.calibration_images,
            "original": validation_mious(stage1, preset, exits=False)["final"],
            "schemes": {},
        }
        for name, path in zip(SCHEMES, (two_stage, e2e, heads), strict=True):
            mious = validation_mious(path, preset)
            final = mious.pop("final")
            record["schemes"][name] = {"final": final, "exits": mious}
        write_text_atomic(folder / RESULT, json.dumps(record, indent=1))

    digests = build_digests(preset)
    missing = [p.name for p in (stage1, two_stage) if not p.exists()]
    if missing and not (folder / RESULT).exists():
        raise SystemExit(f"{workdir}: {', '.join(missing)} missing (built elsewhere?)")
    run_stages(
        workdir=folder,
        stages=[
            Stage(e2e.name, ("stage1",), end_to_end, "end-to-end (all exits with the backbone)"),
            Stage(heads.name, ("stage1",), heads_only, "heads-only (labels, no distillation)"),
            Stage(RESULT, ("supernet",), measure, "validate every scheme's exits"),
        ],
        settings={"stage1": digests["stage1.pt"], "supernet": digests["supernet.pt"]},
        console=console,
    )
    return dict(json.loads((folder / RESULT).read_text()))


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and standard deviations over seeds, in pp, and the paper's claim.

    Returns:
        ``{"rows": [{"scheme", "final", "final_std", "exits_mean", "exits_mean_std",
        "final_minus_original_pp"}], "claim": {"keeps_final", "better_exits", "met"}}``.
    """
    rows = []
    for name in SCHEMES:
        finals = [100 * r["schemes"][name]["final"] for r in records]
        exits = [100 * float(np.mean(list(r["schemes"][name]["exits"].values()))) for r in records]
        kept = [f - 100 * r["original"] for f, r in zip(finals, records, strict=True)]
        rows.append(
            {
                "scheme": name,
                "final": float(np.mean(finals)),
                "final_std": float(np.std(finals)),
                "exits_mean": float(np.mean(exits)),
                "exits_mean_std": float(np.std(exits)),
                "final_minus_original_pp": float(np.mean(kept)),
            }
        )
    by = {r["scheme"]: r for r in rows}
    keeps = by["two-stage"]["final_minus_original_pp"] >= -KEEP_PP
    better = all(by["two-stage"]["exits_mean"] > by[other]["exits_mean"] for other in SCHEMES[1:])
    return {
        "rows": rows,
        "claim": {"keeps_final": keeps, "better_exits": better, "met": keeps and better},
    }


def run(preset: Preset, *, workdir: Path, seeds: int, console: Console) -> dict[str, Any]:
    """The study over training seeds ``0..seeds-1`` (each build in :func:`seed_workdir`)."""
    import dataclasses

    records = []
    for k in range(seeds):
        console.rule(f"[bold]seed {k}")
        seeded = dataclasses.replace(preset, seed=k)
        records.append(run_seed(seed_workdir(workdir, k), seeded, console))
    return {"seeds": list(range(seeds)), "per_seed": records, **summarize(records)}


def print_study(study: dict[str, Any], console: Console) -> None:
    n = len(study["seeds"])
    table = Table(
        title=f"calibration-split mIoU (%) after the same steps from one converged stage 1, "
        f"mean ± std over {n} seed{'s' if n > 1 else ''}"
    )
    for col in ("scheme", "final", "final - original (pp)", "exits' mean"):
        table.add_column(col, justify="left" if col == "scheme" else "right")
    for r in study["rows"]:
        table.add_row(
            r["scheme"],
            f"{r['final']:.2f} ± {r['final_std']:.2f}",
            f"{r['final_minus_original_pp']:+.2f}",
            f"{r['exits_mean']:.2f} ± {r['exits_mean_std']:.2f}",
        )
    console.print(table)
    claim = study["claim"]
    verdict = "met" if claim["met"] else "not met"
    console.print(
        f"the paper's claim (two-stage keeps final within {KEEP_PP} pp and gives better early "
        f"exits): {verdict} (keeps final: {claim['keeps_final']}, better exits: "
        f"{claim['better_exits']})"
    )
