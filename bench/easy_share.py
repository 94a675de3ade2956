"""How much MESS gains depends on how many images are easy: speedup at the same accuracy as a
function of the share of easy images.

For each share ``s`` of easy images (mess-synth difficulty below ``EASY_BELOW``; the others are
the hard ones), subsets with that share are drawn from the calibration and the test split of
the headline build (:mod:`bench.headline`, reused by digest), ``m`` images each (as many as
the scarcer kind allows, the same ``m`` for every share). The search runs on the calibration
subset only and picks the least expected latency within 0.1 pp of the original network's
calibration mIoU, dynamic (exits with a policy) and static (one exit always taken); the
choice is then scored on the test subset with the same share:

- ``delta_pp``: test mIoU of the choice minus the original network's, exact from the test
  split's exit statistics (a calibration pass over the test images: the same per-image
  counts the ONNX models' outputs give, without running them);
- ``speedup``: the original network's expected latency over the choice's, both from the
  profiled cost table (the agent's protocol on this machine, the headline's profile) and the
  test subset's exit fractions: a prediction, which :mod:`bench.headline` checks against
  end-to-end measurement for the full splits.

Means and standard deviations over training seeds. A user reads off the benefit to expect on
data with a given share of easy images.

    python -m bench.easy_share --preset small --seeds 3 --plot bench/easy-share-small.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench._common import ALL_PRESETS, headline_workdir, positive_int, seed_workdir
from bench.headline_select import SAME_ACCURACY_PP
from mess.pipeline import Preset, run_build
from mess.pipeline.build import build_digests
from mess.pipeline.calibration import calibrate_supernet
from mess.pipeline.data import split_difficulties
from mess.pipeline.device import resolve_providers
from mess.pipeline.profile import profile_machine
from mess.pipeline.reuse import Stage, run_stages

EASY_BELOW = 0.5  # mess-synth difficulty in [0, 1]; stratified, so about half of each split
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
TEST_STATS = "test-stats.npz"


def share_subset(difficulty: Sequence[float], share: float, size: int) -> np.ndarray:
    """Indices of ``size`` images, ``round(share * size)`` of them easy, the first of each kind
    in split order (mess-synth's order is random in difficulty: the first are a fair draw).

    Raises:
        ValueError: the split has too few images of a kind, or ``share`` is outside [0, 1].
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    d = np.asarray(difficulty)
    easy, hard = np.flatnonzero(d < EASY_BELOW), np.flatnonzero(d >= EASY_BELOW)
    n_easy = int(round(share * size))
    if n_easy > len(easy) or size - n_easy > len(hard):
        raise ValueError(
            f"{size} images with {n_easy} easy: the split has {len(easy)} easy, {len(hard)} hard"
        )
    return np.sort(np.concatenate([easy[:n_easy], hard[: size - n_easy]]))


def subset_size(difficulties: Sequence[Sequence[float]]) -> int:
    """The largest ``m`` every split can give at every share: its scarcer kind's count."""
    counts = []
    for d in difficulties:
        a = np.asarray(d)
        counts += [int(np.sum(a < EASY_BELOW)), int(np.sum(a >= EASY_BELOW))]
    return min(counts)


def select_samples(stats: Any, indices: np.ndarray) -> Any:
    """``stats`` restricted to the images ``indices`` (a :class:`mess.stats.Stats`)."""
    from mess.stats import Stats

    meta = {**stats.meta, "num_samples": len(indices)}
    return Stats(
        meta,
        stats.intersection[indices],
        stats.predicted[indices],
        stats.target[indices],
        stats.confidence[indices],
    )


def score_share(cal: Any, test: Any, costs: Any, *, max_exits: int) -> dict[str, dict[str, float]]:
    """The same-accuracy choice on the calibration subset, scored on the test subset:
    ``{"dynamic": {...}, "static": {...}}`` with ``speedup``, ``delta_pp`` (test) and
    ``predicted_delta_pp`` (calibration)."""
    from mess.search import Configuration, compute_front, evaluate

    original = Configuration((), "final")
    base_test, base_cal = evaluate(test, costs, original), evaluate(cal, costs, original)
    out = {}
    for mode, exits in (("dynamic", max_exits), ("static", 0)):
        front = compute_front(cal, costs, max_exits=exits)
        point = front.query("min-cost", max_drop=-SAME_ACCURACY_PP / 100)
        on_test = evaluate(test, costs, point.configuration)
        out[mode] = {
            "speedup": base_test.expected_cost / on_test.expected_cost,
            "delta_pp": 100 * (on_test.miou - base_test.miou),
            "predicted_delta_pp": 100
            * (evaluate(cal, costs, point.configuration).miou - base_cal.miou),
            "configuration": point.configuration.to_json(),
        }
    return out


def test_stats_stage(folder: Path, preset: Preset) -> None:
    """The test split's exit statistics next to the build's (reused by digest)."""

    def calibrate_test() -> None:
        calibrate_supernet(
            supernet=folder / "supernet.pt",
            data=preset.data,
            output=folder / "sweep" / TEST_STATS,
            split="test",
            size=preset.size,
            length=preset.test_images,
            batch_size=16,
            data_seed=preset.data_seed,
        )

    run_stages(
        workdir=folder / "sweep",
        stages=[Stage(TEST_STATS, ("supernet", "test_images"), calibrate_test, "test statistics")],
        settings={
            "supernet": build_digests(preset)["supernet.pt"],
            "test_images": preset.test_images,
        },
        console=Console(stderr=True),
    )


def run_sweep(
    preset: Preset,
    workdir: Path,
    *,
    seeds: int,
    shares: Sequence[float],
    max_exits: int,
    console: Console,
    threads: int = 1,
) -> dict[str, Any]:
    from mess.costs import parse_costs
    from mess.stats import load_stats

    presets = [dataclasses.replace(preset, seed=k) for k in range(seeds)]
    folders = [seed_workdir(workdir, k) for k in range(seeds)]
    for p, folder in zip(presets, folders, strict=True):
        run_build(workdir=folder, preset=p, console=console)
        test_stats_stage(folder, p)
    raw, _ = profile_machine(
        bundle=folders[0] / "supernet.mess",
        workdir=folders[0],
        threads=threads,
        providers=resolve_providers("auto"),
        tier=preset.tier,
        reprofile=False,
        console=console,
    )
    costs = parse_costs(raw)
    lengths = {"calibration": preset.calibration_images, "test": preset.test_images}
    difficulty = split_difficulties(
        preset.data,
        lengths,
        size=preset.size,
        num_classes=preset.num_classes,
        data_seed=preset.data_seed,
    )
    if difficulty is None:
        raise SystemExit(f"{preset.data} records no per-image difficulty: nothing to sweep")
    size = subset_size(list(difficulty.values()))
    per_seed = []
    for folder in folders:
        cal, test = load_stats(folder / "stats.npz"), load_stats(folder / "sweep" / TEST_STATS)
        rows = []
        for share in shares:
            c = select_samples(cal, share_subset(difficulty["calibration"], share, size))
            t = select_samples(test, share_subset(difficulty["test"], share, size))
            rows.append({"share": share, **score_share(c, t, costs, max_exits=max_exits)})
        per_seed.append(rows)
    summary = []
    for i, share in enumerate(shares):
        row: dict[str, Any] = {"share": share}
        for mode in ("dynamic", "static"):
            for key in ("speedup", "delta_pp"):
                values = [seed_rows[i][mode][key] for seed_rows in per_seed]
                prefix = "" if mode == "dynamic" else "static_"
                row[prefix + key] = float(np.mean(values))
                row[prefix + key + "_std"] = float(np.std(values))
        summary.append(row)
    return {
        "preset": preset,
        "seeds": list(range(seeds)),
        "images_per_subset": size,
        "easy_below": EASY_BELOW,
        "rows": summary,
        "per_seed": per_seed,
    }


def print_sweep(sweep: dict[str, Any], console: Console) -> None:
    n = len(sweep["seeds"])
    table = Table(
        title=f"same accuracy (calibration mIoU within 0.1 pp) by share of easy images: "
        f"test subsets of {sweep['images_per_subset']} images, mean ± std over {n} seed(s)"
    )
    for col in ("easy share", "speedup", "Δ mIoU (pp)", "static speedup", "static Δ (pp)"):
        table.add_column(col, justify="right")
    for r in sweep["rows"]:
        table.add_row(
            f"{r['share']:.2f}",
            f"{r['speedup']:.2f}x ± {r['speedup_std']:.2f}",
            f"{r['delta_pp']:+.2f} ± {r['delta_pp_std']:.2f}",
            f"{r['static_speedup']:.2f}x ± {r['static_speedup_std']:.2f}",
            f"{r['static_delta_pp']:+.2f} ± {r['static_delta_pp_std']:.2f}",
        )
    console.print(table)


def plot_sweep(sweep: dict[str, Any], output: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    shares = [r["share"] for r in sweep["rows"]]
    for mode, colour, prefix in (("dynamic", "tab:blue", ""), ("static", "tab:orange", "static_")):
        ax.errorbar(
            shares,
            [r[prefix + "speedup"] for r in sweep["rows"]],
            yerr=[r[prefix + "speedup_std"] for r in sweep["rows"]],
            color=colour,
            marker="o",
            capsize=3,
            label=f"{mode} (mean ± std over seeds)",
        )
        for seed_rows in sweep["per_seed"]:
            ax.scatter(
                shares, [r[mode]["speedup"] for r in seed_rows], color=colour, s=8, alpha=0.4
            )
    ax.axhline(1.0, color="grey", lw=0.6)
    ax.set_xlabel(f"share of easy images (mess-synth difficulty < {EASY_BELOW})")
    ax.set_ylabel("speedup at the same accuracy (predicted)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)


def _shares(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected shares like 0,0.5,1, got {text!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"every share must be in [0, 1], got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(ALL_PRESETS), default="small")
    parser.add_argument("--workdir", type=Path, help="The headline's build folder.")
    parser.add_argument("--seeds", type=positive_int, default=1)
    parser.add_argument("--shares", type=_shares, default=list(SHARES))
    parser.add_argument("--max-exits", type=positive_int, default=3)
    parser.add_argument("--plot", type=Path, help="Write the plot (PNG) here.")
    parser.add_argument("--json", action="store_true", help="Print one JSON line last.")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json)
    preset = ALL_PRESETS[args.preset]
    sweep = run_sweep(
        preset,
        args.workdir or headline_workdir(args.preset),
        seeds=args.seeds,
        shares=args.shares,
        max_exits=args.max_exits,
        console=console,
    )
    print_sweep(sweep, console)
    if args.plot:
        plot_sweep(sweep, args.plot, title=f"{args.preset} preset, {preset.data}")
        console.print(f"plot: {args.plot}")
    if args.json:
        print(json.dumps({**sweep, "preset": args.preset}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
