"""How far can an exit head beat the final exit on a trained backbone?

The headline's same-cost goal (+5.33 pp mIoU at the original network's cost) needs exits more
accurate than ``final``; the exact search only combines the exits the supernet has, so its
ceiling (``bench.headline`` prints it) is the supernet's. This asks the supernet question
directly. On the headline's stage-1 backbone (``stage1.pt`` of its work folder, frozen, as in
stage 2) it trains the chosen heads at the chosen positions, by default the heaviest head of
the full space (``crm0-b4-rdi1-dlv3``: no channel reduction, four blocks with rapid dilation
increase, ASPP) and the headline's heavy head at the two deepest positions, for 12 epochs
(3x the headline's stage 2 when the probe was written), once with MESS's positive filtering
distillation and once with labels only (distillation pulls a head towards ``final``'s
answers). It reports each head's test-split mIoU against ``final``'s, next to the same heads of
the headline's supernet (when its ``supernet.pt`` is there: only ``stage1.pt`` is needed).
``--lrs`` trains each variant again at each stage-2 peak learning rate (SGD, poly decay).

Prints a table, then one JSON line::

    {"preset", "workdir", "final_miou", "rows": [{"exit", "variant", "epochs", "lr", "miou",
     "gain_pp", "val": [per-epoch validation mIoU]}, ...], "best_gain_pp", "seconds"}

mIoU in [0, 1]; ``gain_pp`` = 100 x (exit - final), both on the test split.

    python -m bench.headline --preset small           # builds bench/out/headline-small
    python -m bench.ceiling --preset small --json     # 20 min on 2 CPU cores (RESULTS)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench._common import ALL_PRESETS, headline_workdir, positive_float
from mess.pipeline import Preset

HEAVIEST = "crm0-b4-rdi1-dlv3"  # the most expensive head of the full space on wide features
VARIANTS = {"distill": 1.0, "labels": 0.0}  # stage-2 distillation weight


def default_heads(space: str) -> list[str]:
    """:data:`HEAVIEST` and the heaviest head of ``space`` (most blocks, no CRM, ASPP)."""
    from mess.space import resolve_space

    own = max(resolve_space(space), key=lambda h: (h.blocks, not h.crm, h.head == "dlv3", h.rdi))
    return list(dict.fromkeys([HEAVIEST, own.id]))


def probe_supernet(stage1: Path, heads: list[str]) -> Any:
    """The stage-1 supernet with ``heads`` as its head space: backbone and ``final`` from the
    file, the heads freshly initialised (seeded)."""
    import torch

    from mess.nn import load_supernet
    from mess.nn.supernet import build_supernet

    trained = load_supernet(stage1)
    torch.manual_seed(0)
    probe = build_supernet({**trained.manifest(), "space": heads})
    shared = {k: v for k, v in trained.state_dict().items() if not k.startswith("exits.")}
    missing, unexpected = probe.load_state_dict(shared, strict=False)
    if unexpected or any(not k.startswith("exits.") for k in missing):
        raise RuntimeError(f"{stage1}: backbone does not match ({unexpected or missing})")
    return probe


def run_ceiling(
    preset: Preset,
    workdir: Path,
    *,
    heads: list[str],
    positions: list[str] | None,
    epochs: int,
    variants: list[str],
    console: Console,
    lrs: list[float] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    from mess.data import build_dataset
    from mess.nn import load_supernet
    from mess.nn.train import TrainConfig, evaluate, train_stage2
    from mess.space import FINAL

    start = time.perf_counter()
    stage1, trained = workdir / "stage1.pt", workdir / "supernet.pt"
    if not stage1.is_file():
        raise SystemExit(f"error: {stage1} missing: run python -m bench.headline first")
    lrs = lrs or [preset.stage2_peak_lr]
    data = preset.data
    train = build_dataset(
        data, "train", size=preset.size, train=True, length=preset.train_images, seed=0
    )
    val = build_dataset(data, "calibration", size=preset.size, length=64)
    test = build_dataset(data, "test", size=preset.size, length=preset.test_images)

    # Without the headline's supernet (stage 2 not run yet) there are no reference rows.
    headline = load_supernet(trained if trained.is_file() else stage1)
    names = positions or [p.name for p in headline.positions[-2:]]
    unknown = sorted(set(names) - {p.name for p in headline.positions})
    if unknown:
        raise SystemExit(f"error: unknown position(s) {', '.join(unknown)}")

    def exits_of(space: list[str]) -> list[str]:
        return [f"{p}/{h}" for p in names for h in heads if h in space]

    rows: list[dict[str, Any]] = []
    # The headline supernet's own heads (trained with all of its space) as the reference.
    space = [h.id for h in headline.heads]
    ref = exits_of(space) if trained.is_file() else []
    if not ref:
        console.print(f"no reference rows: {trained.name} missing or without these heads")
    scores = evaluate(headline, test, [*ref, FINAL], batch_size=16)
    final_miou = scores[FINAL]
    for eid in ref:
        rows.append(
            {
                "exit": eid,
                "variant": "headline",
                "epochs": preset.stage2_epochs,
                "lr": preset.stage2_peak_lr,
                "miou": scores[eid],
                "val": [],
            }
        )
    del headline
    for variant, lr in ((v, lr) for v in variants for lr in lrs):
        console.rule(
            f"[bold]{variant}, lr {lr:g}: {', '.join(heads)} at {', '.join(names)}, {epochs} ep."
        )
        probe = probe_supernet(stage1, heads)
        exits = exits_of(heads)
        config = TrainConfig(
            epochs=epochs,
            batch_size=preset.batch_size,
            lr=lr,
            seed=0,
            progress=progress,
        )
        records = train_stage2(
            probe,
            train,
            config=config,
            val_set=val,
            exits=exits,
            distill_weight=VARIANTS[variant],
            heads_per_step=preset.heads_per_step,
        )
        scores = evaluate(probe, test, [*exits, FINAL], batch_size=16)
        if abs(scores[FINAL] - final_miou) > 1e-9:
            raise RuntimeError("the frozen final exit changed during the probe")
        for eid in exits:
            curve = [r.val[eid] for r in records]
            rows.append(
                {
                    "exit": eid,
                    "variant": variant,
                    "epochs": epochs,
                    "lr": lr,
                    "miou": scores[eid],
                    "val": curve,
                }
            )
    for row in rows:
        row["gain_pp"] = 100 * (row["miou"] - final_miou)
    return {
        "workdir": str(workdir),
        "final_miou": final_miou,
        "rows": rows,
        "best_gain_pp": max(r["gain_pp"] for r in rows),
        "test_images": len(test),
        "seconds": time.perf_counter() - start,
    }


def _first_best_last(curve: list[float]) -> list[float]:
    return [curve[0], max(curve), curve[-1]] if curve else []


def print_table(summary: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"exit heads vs final on the test split ({summary['test_images']} images): "
        f"final {100 * summary['final_miou']:.2f} %",
        caption="headline: the head as trained in the headline's supernet; distill / labels: "
        "trained again alone on the same frozen backbone; val: calibration-split mIoU (64 images) "
        "after the first epoch / at its best epoch / after the last",
    )
    cols = ("exit", "trained", "epochs", "lr", "test mIoU %", "vs final pp")
    for col in (*cols, "val % first/best/last"):
        table.add_column(col, justify="left" if col in ("exit", "trained") else "right")
    for r in summary["rows"]:
        table.add_row(
            r["exit"],
            r["variant"],
            str(r["epochs"]),
            f"{r['lr']:g}",
            f"{100 * r['miou']:.2f}",
            f"{r['gain_pp']:+.2f}",
            " / ".join(f"{100 * v:.1f}" for v in _first_best_last(r["val"])) or "-",
        )
    console.print(table)
    console.print(
        f"best exit vs final: {summary['best_gain_pp']:+.2f} pp (the paper's same-cost goal: +5.33)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(ALL_PRESETS), default="small")
    ap.add_argument("--workdir", type=Path, help="default: bench/out/headline-<preset>")
    ap.add_argument("--heads", help=f"comma list (default: {HEAVIEST} and the preset's heaviest)")
    ap.add_argument("--positions", help="comma list (default: the two deepest)")
    ap.add_argument("--epochs", type=int, default=12, help="stage-2 epochs of the probe")
    ap.add_argument("--variants", default="distill,labels", help="distill, labels or both")
    ap.add_argument(
        "--lrs", help="comma list of stage-2 peak learning rates (default: the preset's)"
    )
    ap.add_argument("--json", action="store_true", help="everything but the JSON line to stderr")
    args = ap.parse_args(argv)

    preset = ALL_PRESETS[args.preset]
    workdir = args.workdir or headline_workdir(args.preset)
    heads = args.heads.split(",") if args.heads else default_heads(preset.space)
    variants = args.variants.split(",")
    try:
        lrs = [positive_float(v) for v in args.lrs.split(",")] if args.lrs else None
    except (ValueError, argparse.ArgumentTypeError) as exc:
        ap.error(f"--lrs: a comma list of learning rates, got {args.lrs!r} ({exc})")
    if any(v not in VARIANTS for v in variants):
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")
    console = Console(stderr=args.json)
    if not console.is_terminal:  # a log file: room for the whole table
        console = Console(stderr=args.json, width=160)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        summary = run_ceiling(
            preset,
            workdir,
            heads=heads,
            positions=args.positions.split(",") if args.positions else None,
            epochs=args.epochs,
            variants=variants,
            console=console,
            lrs=lrs,
        )
    print_table(summary, console)
    print(json.dumps({"preset": args.preset, **summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
