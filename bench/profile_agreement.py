"""Do two profiles of one device give the same answers? (``python -m bench.profile_agreement``)

Two cost tables of the same bundle on the same device (e.g. the agent's adaptive ``quick`` tier
and the fixed ``quick-fixed`` protocol) are searched in one fleet walk; then, at budgets spread
over the first table's front, each table's answer is priced with the other table. The answers
agree within the measurement's precision when each is within ``--tolerance`` of the budget by
the other table's costs: a change of answer then only trades configurations whose costs the
two profiles cannot tell apart. Also reported: how far the two tables' part costs lie apart.

    python -m bench.profile_agreement --stats stats.npz --costs adaptive.json \\
        --costs fixed.json --max-exits 2 [--random-accuracy 500]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench._common import positive_int


def _entries(table: Any) -> dict[str, float]:
    return {
        f"{kind}/{name}": value
        for kind in ("segments", "heads", "policy")
        for name, value in getattr(table, kind).items()
    }


def part_ratios(a: Any, b: Any) -> dict[str, float]:
    """How far two cost tables' entries lie apart: ``|b / a - 1|`` (%) over the entries."""
    first, second = _entries(a), _entries(b)
    names = sorted(set(first) & set(second))
    ratios = np.array([abs(second[n] / first[n] - 1) for n in names if first[n] > 0])
    return {
        "entries": len(names),
        "median_pct": round(100 * float(np.median(ratios)), 2),
        "p90_pct": round(100 * float(np.percentile(ratios, 90)), 2),
        "max_pct": round(100 * float(ratios.max()), 2),
    }


def agreement(
    stats: Any,
    costs: Sequence[Any],
    *,
    budgets: int = 20,
    max_exits: int = 2,
    tolerance: float = 0.02,
    truncation: bool = False,
) -> dict[str, Any]:
    """The two tables' answers at ``budgets`` budgets, each priced by the other table.

    The budgets are the expected costs of points of the first table's front (evenly chosen
    among them): where an answer sits right at its budget, so any cost the second table
    gives it otherwise shows.
    """
    from mess.search import NoFeasibleConfiguration, compute_fronts, evaluate

    first, second = costs
    fronts = compute_fronts(stats, [first, second], max_exits=max_exits, truncation=truncation)
    points = fronts[0].front_2d()
    picks = np.unique(np.linspace(0, len(points) - 1, min(budgets, len(points))).round())
    rows = []
    for i in picks.astype(int):
        budget = points[i].expected_cost
        row: dict[str, Any] = {"budget": budget}
        try:
            a = fronts[0].query("max-accuracy", budget)
            b = fronts[1].query("max-accuracy", budget)
        except NoFeasibleConfiguration:
            row["feasible"] = False
            rows.append(row)
            continue
        a_by_b = evaluate(stats, second, a.configuration).expected_cost
        b_by_a = evaluate(stats, first, b.configuration).expected_cost
        row |= {
            "same": a.configuration == b.configuration,
            "miou_change_pp": round(100 * (b.miou - a.miou), 3),
            # each answer's cost by the other table, relative to the budget
            "first_by_second_pct": round(100 * (a_by_b / budget - 1), 2),
            "second_by_first_pct": round(100 * (b_by_a / budget - 1), 2),
        }
        row["within"] = bool(max(a_by_b, b_by_a) <= budget * (1 + tolerance))
        rows.append(row)
    answered = [r for r in rows if r.get("feasible", True)]
    return {
        "budgets": len(rows),
        "answered": len(answered),
        "same_answer": sum(r["same"] for r in answered),
        "within_tolerance": sum(r["within"] for r in answered),
        "tolerance_pct": 100 * tolerance,
        "max_abs_miou_change_pp": max((abs(r["miou_change_pp"]) for r in answered), default=0.0),
        "front_points": [len(f.front_2d()) for f in fronts],
        "configs_in_space": int(fronts[0].configs_evaluated),
        "search_seconds": round(float(fronts[0].seconds), 1),
        "parts": part_ratios(first, second),
        "rows": rows,
    }


def random_accuracy(stats: Any, num_samples: int, seed: int = 0) -> Any:
    """Random exit statistics (as ``bench/search.py`` draws them) on ``stats``' exits: a
    front of many points where a few calibration images give a handful; only the accuracy
    side is made up, the costs stay the profiles'."""
    from mess.stats import Stats, validate_stats
    from mess.testing import random_stats

    exits = stats.meta["exits"]
    positions = list(dict.fromkeys(e["position"] for e in exits))
    heads = [e["head"] for e in exits if e["position"] == positions[0]]
    drawn = random_stats(
        num_samples=num_samples,
        num_classes=stats.meta["num_classes"],
        positions=len(positions),
        heads=len(heads),
        pixel_thresholds=stats.meta["pixel_thresholds"],
        seed=seed,
    )
    # random_stats' rows go position by position, so must the exits they are renamed to
    if [e["position"] for e in exits] != [p for p in positions for _ in heads]:
        raise ValueError("the exits are not the same heads at every position, in depth order")
    meta = {**drawn.meta, "exits": exits, "supernet": stats.meta.get("supernet")}
    out = Stats(
        meta=meta,
        intersection=drawn.intersection,
        predicted=drawn.predicted,
        target=drawn.target,
        confidence=drawn.confidence,
    )
    validate_stats(out)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stats", required=True, help="the bundle's stats.npz")
    parser.add_argument(
        "--costs", action="append", required=True, help="a mess-costs file; give it twice"
    )
    parser.add_argument("--budgets", type=positive_int, default=20)
    parser.add_argument("--max-exits", type=positive_int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.02, help="relative, e.g. 0.02")
    parser.add_argument("--truncation", action="store_true")
    parser.add_argument(
        "--random-accuracy",
        type=positive_int,
        metavar="N",
        help="replace the stats' accuracy side by N random samples on the same exits (a few "
        "calibration images make a front of a handful of points)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if len(args.costs) != 2:
        parser.error("give --costs twice: the two profiles to compare")
    from mess.costs import load_costs
    from mess.stats import load_stats

    stats = load_stats(args.stats)
    if args.random_accuracy:
        stats = random_accuracy(stats, args.random_accuracy)
    result = agreement(
        stats,
        [load_costs(p) for p in args.costs],
        budgets=args.budgets,
        max_exits=args.max_exits,
        tolerance=args.tolerance,
        truncation=args.truncation,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print("| budget | same answer | mIoU change pp | 1st by 2nd's costs | 2nd by 1st's |")
        print("|---:|---|---:|---:|---:|")
        for r in result["rows"]:
            if not r.get("feasible", True):
                print(f"| {r['budget']:.3f} | infeasible | | | |")
                continue
            print(
                f"| {r['budget']:.3f} | {'yes' if r['same'] else 'no'} | "
                f"{r['miou_change_pp']:+.3f} | {r['first_by_second_pct']:+.2f} % | "
                f"{r['second_by_first_pct']:+.2f} % |"
            )
        summary = {k: v for k, v in result.items() if k != "rows"}
        print(json.dumps(summary), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
