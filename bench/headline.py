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

Prints a table (test mIoU, GFLOPs, measured mean and p90 latency, speedup, change in pp, and the
calibration-split predictions next to them) and, last, one JSON line::

    {"preset", "device", "baseline": {"miou", "gflops", "latency_ms"},
     "rows": [{"setting", "miou", "gflops", "latency_ms", ...}, ...], ...}

mIoU in [0, 1]; ``latency_ms`` is the mean; ``gflops`` the mean over the test images of the path
each one took. Goals (the paper's headline): at the same accuracy >= 2.83x lower latency, at the
same cost >= +5.33 pp mIoU.

    python -m bench.headline --preset small   # 2-core CPU: 2 h 15 min cold, 42 s reused
    python -m bench.headline --preset paper   # needs a GPU (--force to try without)
    python -m bench.headline --preset small --stage2-epochs 32  # stage 1 reused, 2 rebuilt

Train on one machine, measure on another: ``--build-only`` stops after the build; copy the
work folder's ``supernet.pt`` and ``digests.json`` to the target and run there (calibration and
export are redone there; the missing earlier checkpoints are not rebuilt:
:mod:`mess.pipeline.reuse`).
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from bench._common import (
    ALL_PRESETS,
    headline_workdir,
    nonnegative_int,
    positive_float,
    positive_int,
)
from bench.headline_report import plot, print_table, print_verdicts
from bench.headline_select import Row, ceiling, choose_settings, goals, path_mean, row_json
from mess.fileio import write_text_atomic
from mess.pipeline import Preset, run_build
from mess.pipeline.device import describe_device, resolve_providers
from mess.pipeline.measure import load_test_split, measure_in_rounds, pool, write_model
from mess.pipeline.profile import profile_machine

GPU_PRESETS = ("paper",)


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
        row.measured = pooled[key].summary()
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


def resolve_preset(
    preset_name: str,
    *,
    stage1_epochs: int | None = None,
    stage2_epochs: int | None = None,
    stage2_lr: float | None = None,
    workers: int | None = None,
) -> Preset:
    """The named preset with the options that override it (``None``: the preset's)."""
    overrides: dict[str, Any] = {
        "stage1_epochs": stage1_epochs,
        "stage2_epochs": stage2_epochs,
        "stage2_lr": stage2_lr,
        "workers": workers,
    }
    return dataclasses.replace(
        ALL_PRESETS[preset_name], **{k: v for k, v in overrides.items() if v is not None}
    )


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
    stage1_epochs: int | None = None,
    stage2_epochs: int | None = None,
    stage2_lr: float | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """The whole benchmark; returns the summary printed as the JSON line.

    ``stage1_epochs``, ``stage2_epochs`` and ``stage2_lr`` override the preset's
    (``preset_settings`` in the summary records what ran); the build digests rebuild what
    they change. ``workers`` (DataLoader processes) is not part of the digests.
    """
    from mess.bundle import read_bundle
    from mess.costs import load_costs, parse_costs
    from mess.stats import load_stats

    start = time.perf_counter()
    preset = resolve_preset(
        preset_name,
        stage1_epochs=stage1_epochs,
        stage2_epochs=stage2_epochs,
        stage2_lr=stage2_lr,
        workers=workers,
    )
    timings = run_build(workdir=workdir, preset=preset, console=console)
    bundle_path = workdir / "supernet.mess"
    providers = resolve_providers(provider)
    device = describe_device(providers=providers, threads=threads)

    if profile is not None:
        costs, record = load_costs(profile), {"loaded": str(profile)}
    else:
        raw, record = profile_machine(
            bundle=bundle_path,
            workdir=workdir,
            threads=threads,
            providers=providers,
            tier=preset.tier,
            reprofile=reprofile,
            console=console,
        )
        costs = parse_costs(raw)
    stats = load_stats(workdir / "stats.npz")
    with tempfile.TemporaryDirectory(prefix="mess-headline-") as tmp:
        gflops = parse_costs(read_bundle(bundle_path, tmp, check_onnx=False).costs)

    console.rule("[bold]search (exact, calibration split)")
    rows, fronts = choose_settings(stats, costs, gflops, max_exits=max_exits)
    console.print(
        f"dynamic front: {fronts['dynamic'].configs_evaluated:,} configurations, static: "
        f"{fronts['static'].configs_evaluated:,}, {fronts['seconds']:.1f} s"
    )

    samples = load_test_split(preset=preset)
    t0 = time.perf_counter()
    measurement = measure_rows(
        rows,
        bundle_path,
        samples,
        num_classes=preset.num_classes,
        stats=stats,
        gflops=gflops,
        costs=costs,
        threads=threads,
        providers=providers,
        rounds=rounds,
        models_dir=workdir / "models",
        console=console,
    )
    measurement["seconds"] = time.perf_counter() - t0
    out_rows = [row_json(r, rows[0]) for r in rows]
    base = out_rows[0]
    summary: dict[str, Any] = {
        "preset": preset_name,
        "device": device,
        "baseline": {
            "miou": base["miou"],
            "gflops": base["gflops"],
            "latency_ms": base["latency_ms"],
            "latency_p90_ms": base["latency_p90_ms"],
        },
        "rows": out_rows,
        "goals": goals(out_rows),
        "ceiling": ceiling(fronts["dynamic"]),
        "splits": {
            "calibration": stats.num_samples,
            "test": len(samples),
        },
        "preset_settings": asdict(preset),
        "search": {
            "max_exits": max_exits,
            "dynamic_configs": fronts["dynamic"].configs_evaluated,
            "static_configs": fronts["static"].configs_evaluated,
            "seconds": fronts["seconds"],
        },
        "profile": {k: v for k, v in record.items() if k not in ("costs", "key")},
        "measurement": measurement,
        "stage_seconds": timings,
        "seconds": time.perf_counter() - start,
    }
    title = (
        f"MESS headline, preset {preset_name}: test split ({len(samples)} images) measured on "
        f"{device}, batch 1; predictions from the calibration split ({stats.num_samples})"
    )
    print_table(out_rows, console, title)
    print_verdicts(summary, console, unit=costs.unit)
    png = workdir / f"headline-{preset_name}.png"
    plot(
        fronts,
        out_rows,
        png,
        title=f"MESS headline, preset {preset_name}\n{device}",
        unit=costs.unit,
    )
    write_text_atomic(workdir / "headline.json", json.dumps(summary, indent=1))
    console.print(f"plot {png}, summary {workdir / 'headline.json'}")
    return summary


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
        "--workers",
        type=nonnegative_int,
        help="DataLoader workers for training instead of the preset's (not part of the digests)",
    )
    ap.add_argument(
        "--build-only",
        action="store_true",
        help="train, calibrate and export, then stop (build on a GPU, measure elsewhere)",
    )
    args = ap.parse_args(argv)

    console = Console(stderr=args.json)
    if not console.is_terminal:  # a log file: room for the whole table
        console = Console(stderr=args.json, width=180)
    refusal = gpu_refusal(args.preset, force=args.force)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    workdir = args.workdir or headline_workdir(args.preset)
    overrides = {
        "stage1_epochs": args.stage1_epochs,
        "stage2_epochs": args.stage2_epochs,
        "stage2_lr": args.stage2_lr,
        "workers": args.workers,
    }
    if args.build_only:
        preset = resolve_preset(args.preset, **overrides)
        timings = run_build(workdir=workdir, preset=preset, console=console)
        console.print(f"built {workdir}: {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}")
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
            **overrides,
        )
    sys.stdout.flush()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
