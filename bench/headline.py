"""The paper's headline table, measured on this machine (docs/DESIGN.md, "What MESS is").

Pipeline (:mod:`mess.pipeline`, no service): train the supernet in two stages,
calibrate it on the calibration split and export the bundle (each reused by digest from
``bench/out/headline-<preset>/``), profile this machine in-process with the agent's protocol
(:mod:`profilers.measure`, one thread; or ``--profile costs.json``), compute the exact front
once, answer the paper's settings, then assemble each chosen configuration into one ONNX model
and run it on the test split in onnxruntime (batch 1):

- ``original``: the original network, ``final`` alone;
- ``min-cost@0.1pp`` / ``min-cost@1pp``: least expected latency with a calibration-split mIoU
  at most 0.1 / 1 pp below the original's (the paper's "same accuracy");
- ``max-accuracy@1x``: best mIoU with an expected latency at most the original's (the paper's
  "same cost");
- each again as a static model (``<setting>/static``): a single exit always taken, no policy.

The protocol (docs/DESIGN.md, "Testing and benchmarks"): every setting is chosen on the
calibration split and the test split is read once, by the final measurement; ``--seeds K`` runs
the whole pipeline for training seeds ``0..K-1`` (default 1; the run of record uses 3), each
built in its own folder (seed 0 in the work folder, ``seed-<k>/`` in it), so a K-seed run
resumes from the seeds built; ``--data-seed N`` draws mess-synth from base seed N (in
``data-seed-<N>/``). The original network's regime is checked on the calibration split: stage 1
run again for as many epochs (:mod:`mess.pipeline.convergence`), ``final`` against the shallow
exits, each head's mIoU by depth.

Prints a table (test mIoU, change in pp and speedup with their std over seeds and 95 %
bootstrap intervals, the static cut at the same constraint, GFLOPs, measured mean and p90
latency, and the calibration-split predictions next to them), the splits' difficulty balance
and the regime, and, last, one JSON line::

    {"preset", "device", "seeds": [..], "data_seed",
     "baseline": {"miou", "gflops", "latency_ms"},
     "rows": [{"setting", "miou", "gflops", "latency_ms", "speedup", "speedup_std",
               "delta_pp", "delta_pp_std", "delta_pp_ci95", "speedup_ci95",
               "static_speedup", "static_delta_pp", "per_seed", ...}, ...],
     "regime": {"converged", "convergence_delta_pp", "final_minus_best_shallow_pp", ...},
     "splits": {"train", "calibration", "test", "difficulty", "balanced", ...}, ...}

mIoU in [0, 1]; ``latency_ms`` is the mean; ``gflops`` the mean over the test images of the path
each one took; a row's figures are means over seeds. Goals (the paper's headline): at the same
accuracy >= 2.83x lower latency, at the same cost >= +5.33 pp mIoU.

    python -m bench.headline --preset small   # 2-core CPU: about 45 min cold per seed
    python -m bench.headline --preset paper   # needs a GPU (--force to try without)
    python -m bench.headline --preset small --stage2-epochs 32  # stage 1 reused, 2 rebuilt
    python -m bench.headline --preset small --seeds 3  # the run of record: seeds 1, 2 added
    python -m bench.headline --preset small --build-only --stage1-only --optimizer adamw \
        --lr 0.002 --stage1-epochs 24  # sizing stage 1: its convergence check, no heads
    python -m bench.headline --preset small --build-only --stage1-only --train-images 256 \
        --stage1-epochs 48  # the same on a smaller training set

Train on one machine, measure on another: ``--build-only`` stops after the build and the
convergence check; copy the work folder's ``supernet.pt``, ``digests.json`` and
``convergence/`` to the target and run there (calibration and export are redone there; the
missing earlier checkpoints are not rebuilt: :mod:`mess.pipeline.reuse`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from bench._common import (
    ALL_PRESETS,
    data_seed_workdir,
    headline_workdir,
    nonnegative_int,
    positive_float,
    positive_int,
    scale_range,
    seed_workdir,
)
from bench.headline_report import plot, print_protocol, print_regime, print_table, print_verdicts
from bench.headline_select import (
    Row,
    ceiling,
    choose_settings,
    combine_rows,
    goals,
    path_mean,
    row_json,
)
from bench.headline_stats import (
    CONVERGED_PP,
    LEVEL,
    RESAMPLES,
    Paired,
    paired_bootstrap,
    per_image_latency,
    regime_checks,
    split_balance,
)
from mess.fileio import write_text_atomic
from mess.pipeline import Preset, run_build
from mess.pipeline.convergence import optimizer_steps, run_convergence
from mess.pipeline.data import split_difficulties
from mess.pipeline.device import describe_device, resolve_providers
from mess.pipeline.measure import load_test_split, measure_in_rounds, pool, write_model
from mess.pipeline.profile import profile_machine

GPU_PRESETS = ("paper",)
# The preset's settings the command line may override (all part of the digests but workers).
OVERRIDABLE = frozenset(
    {
        "stage1_epochs",
        "stage2_epochs",
        "stage2_lr",
        "workers",
        "lr",
        "optimizer",
        "train_images",
        "augment_scale",
    }
)


def gpu_refusal(preset_name: str, *, force: bool, cuda: bool | None = None) -> str | None:
    """Why ``preset_name`` must not run here (``None``: it may)."""
    if preset_name not in GPU_PRESETS or force:
        return None
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        return None
    return (
        f"the {preset_name!r} preset is sized for a GPU (ResNet-50 DeepLabV3, 576 exits, "
        "512x512: days on a CPU) and no CUDA device is visible; run --preset small, or add "
        "--force to run it anyway"
    )


def measure_rows(
    rows: list[Row],
    bundle: Path,
    samples: list,
    *,
    num_classes: int,
    stats: Any,
    gflops: Any,
    costs: Any,
    threads: int,
    providers: list[str],
    rounds: int,
    models_dir: Path,
    console: Console,
) -> dict[str, Any]:
    """Assemble each distinct configuration and run it on the test split (batch 1).

    The machine is shared, so its speed drifts: every model runs once per round, in the same
    order, and its latency statistics pool all rounds; the original network's mean per round
    shows the drift. One untimed pass of the original first warms the process up.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    models: dict[str, Path] = {}
    for row in rows:
        key = json.dumps(row.configuration.to_json(), sort_keys=True)
        if key in models:
            continue
        models[key] = models_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"
        meta = {
            "mess.predicted_miou": f"{row.predicted['miou']:.6f}",
            "mess.predicted_ms": f"{row.predicted['latency_ms']:.4f}",
        }
        write_model(bundle=bundle, configuration=json.loads(key), output=models[key], metadata=meta)

    def show(r: int, last: dict[str, Any]) -> None:
        means = [f"{e.summary()['latency_ms']['mean']:.2f}" for e in last.values()]
        console.print(f"  round {r + 1}/{rounds}: mean ms {', '.join(means)} (original first)")

    console.rule(f"[bold]measure on the test split (onnxruntime, batch 1, {rounds} rounds)")
    original = json.dumps(rows[0].configuration.to_json(), sort_keys=True)
    runs = measure_in_rounds(
        models=models,
        samples=samples,
        num_classes=num_classes,
        rounds=rounds,
        threads=threads,
        providers=providers,
        warm_up=original,
        on_round=show,
    )
    pooled = {key: pool(evals) for key, evals in runs.items()}
    for row in rows:
        key = json.dumps(row.configuration.to_json(), sort_keys=True)
        row.evaluation = pooled[key]
        row.measured = row.evaluation.summary()
        counts = row.measured["exit_counts"]
        row.gflops = path_mean(stats, gflops, row.configuration, counts)
        row.parts_ms = path_mean(stats, costs, row.configuration, counts)
    per_round = [e.summary()["latency_ms"]["mean"] for e in runs[original]]
    return {
        "rounds": rounds,
        "original_ms_per_round": per_round,
        "drift": max(per_round) / min(per_round) - 1,
        "models": len(models),
    }


def resolve_preset(preset_name: str, **overrides: Any) -> Preset:
    """The named preset with the settings that override it (a ``None`` keeps the preset's):
    ``stage1_epochs``, ``stage2_epochs``, ``stage2_lr``, ``workers``, ``lr``, ``optimizer``,
    ``train_images``, ``augment_scale``."""
    unknown = set(overrides) - OVERRIDABLE
    if unknown:
        raise TypeError(f"not a setting to override: {', '.join(sorted(unknown))}")
    return dataclasses.replace(
        ALL_PRESETS[preset_name], **{k: v for k, v in overrides.items() if v is not None}
    )


@dataclass
class SeedRun:
    """One training seed's build, search and regime, before the test split is read."""

    preset: Preset
    folder: Path
    stats: Any
    gflops: Any
    rows: list[Row]
    fronts: dict[str, Any]
    regime: dict[str, Any]


def seed_presets(preset: Preset, seeds: int, data_seed: int) -> list[Preset]:
    """The preset once per training seed ``0..seeds-1``, on mess-synth's base seed ``data_seed``."""
    return [dataclasses.replace(preset, seed=k, data_seed=data_seed) for k in range(seeds)]


def build_seeds(
    presets: list[Preset], workdir: Path, *, console: Console, until: str | None = None
) -> tuple[dict[str, float], list[dict[str, Any] | None]]:
    """Build every seed (reusing what its folder holds; with ``until``, only as far as that
    output) and its convergence check.

    Returns:
        Seconds per stage title summed over the seeds, and each seed's convergence record.
    """
    timings: dict[str, float] = {}
    convergence = []
    for preset in presets:
        folder = seed_workdir(workdir, preset.seed)
        if len(presets) > 1:
            console.rule(f"[bold]seed {preset.seed} ({folder})")
        built = run_build(workdir=folder, preset=preset, console=console, until=until)
        for title, seconds in built.items():
            timings[title] = timings.get(title, 0.0) + seconds
        convergence.append(run_convergence(workdir=folder, preset=preset, console=console))
    return timings, convergence


def seed_regime(stats: Any, preset: Preset, convergence: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`bench.headline_stats.regime_checks` of one seed, from its calibration stats."""
    from mess.stats import miou

    n, exits = stats.num_samples, stats.exits
    mious = [miou(stats, np.full(n, e)) for e in range(len(exits) + 1)]
    return regime_checks(
        exits=exits,
        mious=mious[:-1],
        final_miou=mious[-1],
        convergence=convergence,
        original_steps=optimizer_steps(preset, preset.stage1_epochs),
        head_steps=optimizer_steps(preset, preset.stage2_epochs),
    )


def print_convergence(
    presets: list[Preset], convergence: list[dict[str, Any] | None], console: Console
) -> None:
    """Each seed's convergence check, one line (``--stage1-only``: no heads, no regime)."""
    for p, conv in zip(presets, convergence, strict=True):
        if conv is None:
            console.print(f"seed {p.seed}: convergence not measured (no stage1.pt)")
            continue
        delta = 100 * (conv["double_miou"] - conv["budget_miou"])
        verdict = "[green]converged[/]" if abs(delta) < CONVERGED_PP else "[red]not converged[/]"
        console.print(
            f"seed {p.seed}: final on the calibration split {100 * conv['budget_miou']:.2f} % "
            f"after {conv['budget_epochs']} epochs, {100 * conv['double_miou']:.2f} % after "
            f"{conv['double_epochs']}: {delta:+.2f} pp, {verdict}"
        )


def combine_regimes(regimes: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON line's ``regime``: every seed's checks must hold; the figures are means."""

    def mean(key: str) -> float | None:
        values = [r[key] for r in regimes if r[key] is not None]
        return float(np.mean(values)) if len(values) == len(regimes) else None

    return {
        "split": "calibration",
        "converged": all(r["converged"] for r in regimes),
        "convergence_delta_pp": mean("convergence_delta_pp"),
        "final_minus_best_shallow_pp": mean("final_minus_best_shallow_pp"),
        "final_beats_shallow": all(r["final_beats_shallow"] for r in regimes),
        "depth_monotone": all(r["depth_monotone"] for r in regimes),
        "enough_steps": all(r["enough_steps"] for r in regimes),
        "original_steps": regimes[0]["original_steps"],
        "head_steps": regimes[0]["head_steps"],
        "per_seed": regimes,
    }


def row_intervals(
    per_seed_rows: list[list[Row]], images: int, *, resamples: int
) -> list[dict[str, Any]]:
    """Each setting's paired bootstrap over the test images, seeds pooled."""
    out = []
    for i in range(len(per_seed_rows[0])):
        pairs = []
        for rows in per_seed_rows:
            e, b = rows[i].evaluation, rows[0].evaluation
            pairs.append(
                Paired(
                    e.intersection,
                    e.union,
                    per_image_latency(e.latency_ms, images),
                    b.intersection,
                    b.union,
                    per_image_latency(b.latency_ms, images),
                )
            )
        # one bootstrap seed for every row: the same resamples, so equal models agree
        out.append(paired_bootstrap(pairs, resamples=resamples, seed=0))
    return out


def run_headline(
    preset_name: str,
    workdir: Path,
    *,
    console: Console,
    profile: Path | None = None,
    reprofile: bool = False,
    threads: int = 1,
    provider: str = "auto",
    max_exits: int = 3,
    rounds: int = 3,
    seeds: int = 1,
    data_seed: int = 0,
    resamples: int = RESAMPLES,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole benchmark; returns the summary printed as the JSON line.

    ``overrides`` replace the preset's settings (:func:`resolve_preset`; ``preset_settings``
    in the summary records what ran); the build digests rebuild what they change. ``workers``
    (DataLoader processes) is not part of the digests. ``seeds`` training seeds
    ``0..seeds-1`` each build in their own folder (:func:`seed_workdir`); ``workdir`` is the
    data seed's folder (:func:`data_seed_workdir`).

    Every setting is chosen on the calibration split; the test split is read once, by the
    final measurement (its difficulties, for the split balance, after it).
    """
    from mess.bundle import read_bundle
    from mess.costs import load_costs, parse_costs
    from mess.stats import load_stats

    start = time.perf_counter()
    preset = resolve_preset(preset_name, **(overrides or {}))
    presets = seed_presets(preset, seeds, data_seed)
    timings, convergence = build_seeds(presets, workdir, console=console)
    folders = [seed_workdir(workdir, p.seed) for p in presets]
    providers = resolve_providers(provider)
    device = describe_device(providers=providers, threads=threads)

    if profile is not None:
        costs, record = load_costs(profile), {"loaded": str(profile)}
    else:  # the seeds' bundles share their parts' shapes: one profile serves them all
        raw, record = profile_machine(
            bundle=folders[0] / "supernet.mess",
            workdir=folders[0],
            threads=threads,
            providers=providers,
            tier=preset.tier,
            reprofile=reprofile,
            console=console,
        )
        costs = parse_costs(raw)

    console.rule("[bold]search (exact, calibration split)")
    runs = []
    for p, folder, conv in zip(presets, folders, convergence, strict=True):
        stats = load_stats(folder / "stats.npz")
        with tempfile.TemporaryDirectory(prefix="mess-headline-") as tmp:
            bundle = read_bundle(folder / "supernet.mess", tmp, check_onnx=False)
            gflops = parse_costs(bundle.costs)
        rows, fronts = choose_settings(stats, costs, gflops, max_exits=max_exits)
        console.print(
            f"seed {p.seed}: dynamic front {fronts['dynamic'].configs_evaluated:,} "
            f"configurations, static {fronts['static'].configs_evaluated:,}, "
            f"{fronts['seconds']:.1f} s"
        )
        runs.append(SeedRun(p, folder, stats, gflops, rows, fronts, seed_regime(stats, p, conv)))

    samples = load_test_split(preset=presets[0])  # the same images for every training seed
    t0 = time.perf_counter()
    measurements = []
    for run in runs:
        if len(runs) > 1:
            console.print(f"seed {run.preset.seed}:")
        measurements.append(
            measure_rows(
                run.rows,
                run.folder / "supernet.mess",
                samples,
                num_classes=preset.num_classes,
                stats=run.stats,
                gflops=run.gflops,
                costs=costs,
                threads=threads,
                providers=providers,
                rounds=rounds,
                models_dir=run.folder / "models",
                console=console,
            )
        )
    seconds = time.perf_counter() - t0
    per_seed_rows = [run.rows for run in runs]
    intervals = row_intervals(per_seed_rows, len(samples), resamples=resamples)
    seed_ids = [p.seed for p in presets]
    out_rows = combine_rows(
        [[row_json(r, rows[0]) for r in rows] for rows in per_seed_rows], intervals, seed_ids
    )
    measurement = dict(measurements[0])
    if len(measurements) > 1:
        measurement["per_seed"] = measurements
    measurement["seconds"] = seconds
    stats0, fronts0 = runs[0].stats, runs[0].fronts
    balance = splits_summary(presets[0], calibration=stats0.num_samples, test=len(samples))
    base = out_rows[0]
    summary: dict[str, Any] = {
        "preset": preset_name,
        "device": device,
        "seeds": seed_ids,
        "data_seed": data_seed,
        "baseline": {
            "miou": base["miou"],
            "gflops": base["gflops"],
            "latency_ms": base["latency_ms"],
            "latency_p90_ms": base["latency_p90_ms"],
        },
        "rows": out_rows,
        "goals": goals(out_rows),
        "ceiling": ceiling(fronts0["dynamic"]),
        "regime": combine_regimes([run.regime for run in runs]),
        "splits": balance,
        "bootstrap": {
            "resamples": resamples,
            "level": LEVEL,
            "method": "percentile; test images resampled, each seed's model paired with "
            "its original on the same resample, statistic the mean over seeds",
        },
        "preset_settings": asdict(presets[0]),
        "search": {
            "max_exits": max_exits,
            "dynamic_configs": fronts0["dynamic"].configs_evaluated,
            "static_configs": fronts0["static"].configs_evaluated,
            "seconds": fronts0["seconds"],
        },
        "profile": {k: v for k, v in record.items() if k not in ("costs", "key")},
        "measurement": measurement,
        "stage_seconds": timings,
        "seconds": time.perf_counter() - start,
    }
    seed_text = f"{seeds} seeds, mean" if seeds > 1 else "seed 0"
    title = (
        f"MESS headline, preset {preset_name} ({seed_text}, data seed {data_seed}): test split "
        f"({len(samples)} images) measured on {device}, batch 1; predictions from the "
        f"calibration split ({stats0.num_samples})"
    )
    print_table(out_rows, console, title)
    print_protocol(summary, console)
    print_verdicts(summary, console, unit=costs.unit)
    png = workdir / f"headline-{preset_name}.png"
    plot(
        fronts0,
        out_rows,
        png,
        title=f"MESS headline, preset {preset_name} ({seed_text}; fronts of seed "
        f"{seed_ids[0]})\n{device}",
        unit=costs.unit,
    )
    write_text_atomic(workdir / "headline.json", json.dumps(summary, indent=1))
    console.print(f"plot {png}, summary {workdir / 'headline.json'}")
    return summary


def splits_summary(preset: Preset, *, calibration: int, test: int) -> dict[str, Any]:
    """The JSON line's ``splits``: the image counts and the balance of their difficulty."""
    out: dict[str, Any] = {"train": preset.train_images, "calibration": calibration, "test": test}
    difficulties = split_difficulties(
        preset.data,
        {"train": preset.train_images, "calibration": calibration, "test": test},
        size=preset.size,
        num_classes=preset.num_classes,
        data_seed=preset.data_seed,
    )
    if difficulties is not None:
        out.update(split_balance(difficulties))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(ALL_PRESETS), default="small")
    ap.add_argument("--json", action="store_true", help="everything but the JSON line to stderr")
    ap.add_argument("--force", action="store_true", help="run a GPU preset without a GPU")
    ap.add_argument("--workdir", type=Path, help="default: bench/out/headline-<preset>")
    ap.add_argument("--profile", type=Path, help="a mess-costs v1 table (ms) instead of timing")
    ap.add_argument("--reprofile", action="store_true", help="time the parts again")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--max-exits", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="timed passes over the test split")
    ap.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="training seeds 0..K-1, each a whole build (the run of record: 3); rows report "
        "mean and std over seeds and 95%% bootstrap intervals",
    )
    ap.add_argument(
        "--data-seed",
        type=nonnegative_int,
        default=0,
        help="mess-synth's base seed (0: the published splits)",
    )
    ap.add_argument("--resamples", type=positive_int, default=RESAMPLES, help="bootstrap resamples")
    for stage in (1, 2):
        ap.add_argument(
            f"--stage{stage}-epochs",
            type=positive_int,
            help=f"instead of the preset's (rebuilds stage {stage} and what follows)",
        )
    ap.add_argument(
        "--stage2-lr",
        type=positive_float,
        help="stage 2's peak learning rate instead of the preset's (rebuilds stage 2 on)",
    )
    ap.add_argument(
        "--lr",
        type=positive_float,
        help="the training stages' peak learning rate instead of the preset's (rebuilds from "
        "stage 1; stage 2 keeps the preset's --stage2-lr where it has one)",
    )
    ap.add_argument(
        "--optimizer",
        choices=("sgd", "adamw"),
        help="both training stages' optimiser instead of the preset's (rebuilds from stage 1)",
    )
    ap.add_argument(
        "--train-images",
        type=positive_int,
        help="training images instead of the preset's (rebuilds from stage 1)",
    )
    ap.add_argument(
        "--augment-scale",
        type=scale_range,
        metavar="LO,HI",
        help="the training augmentation's scale range instead of the preset's 0.5,2 (rebuilds "
        "from stage 1)",
    )
    ap.add_argument(
        "--workers",
        type=nonnegative_int,
        help="DataLoader workers for training instead of the preset's (not part of the digests)",
    )
    ap.add_argument(
        "--build-only",
        action="store_true",
        help="train, calibrate and export, then stop (build on a GPU, measure elsewhere)",
    )
    ap.add_argument(
        "--stage1-only",
        action="store_true",
        help="with --build-only: train stage 1 and its convergence check, no heads (a study "
        "of stage 1's budget, on the calibration split)",
    )
    args = ap.parse_args(argv)

    console = Console(stderr=args.json)
    if not console.is_terminal:  # a log file: room for the whole table
        console = Console(stderr=args.json, width=180)
    refusal = gpu_refusal(args.preset, force=args.force)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    workdir = data_seed_workdir(args.workdir or headline_workdir(args.preset), args.data_seed)
    overrides = {
        "stage1_epochs": args.stage1_epochs,
        "stage2_epochs": args.stage2_epochs,
        "stage2_lr": args.stage2_lr,
        "workers": args.workers,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "train_images": args.train_images,
        "augment_scale": args.augment_scale,
    }
    if args.stage1_only and not args.build_only:
        ap.error("--stage1-only goes with --build-only")
    if args.build_only:  # the convergence check too: it trains from stage1.pt, which stays here
        preset = resolve_preset(args.preset, **overrides)
        presets = seed_presets(preset, args.seeds, args.data_seed)
        until = "stage1.pt" if args.stage1_only else None
        timings, convergence = build_seeds(presets, workdir, console=console, until=until)
        console.print(f"built {workdir}: {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}")
        if args.stage1_only:
            print_convergence(presets, convergence, console)
            return 0
        from mess.stats import load_stats

        # the regime needs only the calibration split: check it before the test split is read
        regimes = [
            seed_regime(load_stats(seed_workdir(workdir, p.seed) / "stats.npz"), p, conv)
            for p, conv in zip(presets, convergence, strict=True)
        ]
        print_regime(combine_regimes(regimes), console)
        return 0
    # --json: stdout carries the JSON line alone (training prints its epochs there)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        summary = run_headline(
            args.preset,
            workdir,
            console=console,
            profile=args.profile,
            reprofile=args.reprofile,
            threads=args.threads,
            provider=args.provider,
            max_exits=args.max_exits,
            rounds=args.rounds,
            seeds=args.seeds,
            data_seed=args.data_seed,
            resamples=args.resamples,
            overrides=overrides,
        )
    sys.stdout.flush()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
