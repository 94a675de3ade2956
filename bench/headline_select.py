"""The headline's settings: answered on the exact front, measured rows, the paper's goals.

See docs/DESIGN.md, "Search".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.headline_stats import mean_std

# The paper's three settings: (name, objective, max_drop in mIoU units or budget factor).
SETTINGS = (
    ("min-cost@0.1pp", "min-cost", 0.001),
    ("min-cost@1pp", "min-cost", 0.01),
    ("max-accuracy@1x", "max-accuracy", 1.0),
)
GOAL_SPEEDUP = 2.83  # same accuracy: ResNet-50 DRN 59.02 -> 58.91 mIoU
GOAL_GAIN_PP = 5.33  # same cost: 59.02 -> 64.35 mIoU
SAME_ACCURACY_PP = -0.1  # the paper's "same accuracy" lost 0.11 pp


@dataclass
class Row:
    """One setting: its configuration, the search's prediction and the measurement."""

    setting: str
    mode: str  # "original", "dynamic" or "static"
    configuration: Any  # mess.search.Configuration
    predicted: dict[str, Any]
    measured: dict[str, Any] = field(default_factory=dict)
    gflops: float = math.nan  # mean over the test images of the path each one took
    parts_ms: float = math.nan  # the same with the profile: sum of parts for the test exits
    evaluation: Any = None  # the pooled mess.evaluate.Evaluation (per-image counts, latencies)


def choose_settings(stats: Any, costs: Any, gflops: Any, *, max_exits: int) -> tuple[list, dict]:
    """Compute the dynamic and the static fronts once and answer every setting from them.

    Returns:
        ``(rows, fronts)``: rows original first, then each setting dynamic then static;
        ``fronts``: ``{"dynamic", "static"}`` fronts and the search seconds.
    """
    from mess.search import Configuration, compute_front, evaluate

    original = Configuration((), "final")
    start = time.perf_counter()
    dynamic = compute_front(stats, costs, max_exits=max_exits)
    static = compute_front(stats, costs, max_exits=0)  # a single exit always taken, or final
    seconds = time.perf_counter() - start

    def predicted(config: Any) -> dict[str, Any]:
        ms = evaluate(stats, costs, config)
        return {
            "miou": ms.miou,
            "latency_ms": ms.expected_cost,
            "worst_ms": ms.worst_cost,
            "gflops": evaluate(stats, gflops, config).expected_cost,
            "exit_fractions": ms.exit_fractions,
        }

    rows = [Row("original", "original", original, predicted(original))]
    original_ms = costs.original_cost()
    for name, objective, value in SETTINGS:
        for mode, front in (("dynamic", dynamic), ("static", static)):
            if objective == "min-cost":
                point = front.query("min-cost", max_drop=value)
            else:
                point = front.query("max-accuracy", value * original_ms)
            label = name if mode == "dynamic" else f"{name}/static"
            rows.append(Row(label, mode, point.configuration, predicted(point.configuration)))
    return rows, {"dynamic": dynamic, "static": static, "seconds": seconds}


def path_mean(stats: Any, table: Any, config: Any, exit_counts: list[int]) -> float:
    """Mean cost (``table``'s unit) over images of the path each one took, from how many
    left at each exit (the heads and policies of the exits they passed included)."""
    from mess.search import Problem

    problem = Problem(stats, table)
    exits, _, terminal = problem.check(config)
    path = problem.path_costs(exits, terminal)
    counts = list(exit_counts) + [0] * (len(path) - len(exit_counts))
    return sum(c * p for c, p in zip(counts, path, strict=True)) / max(sum(counts), 1)


def row_json(row: Row, baseline: Row) -> dict[str, Any]:
    m, b = row.measured, baseline.measured
    return {
        "setting": row.setting,
        "mode": row.mode,
        "miou": m["miou"],
        "gflops": row.gflops,
        "latency_ms": m["latency_ms"]["mean"],
        "latency_p90_ms": m["latency_ms"]["p90"],
        "sum_of_parts_ms": row.parts_ms,
        "speedup": b["latency_ms"]["mean"] / m["latency_ms"]["mean"],
        "miou_change_pp": 100 * (m["miou"] - b["miou"]),
        "exit_fractions": m["exit_fractions"],
        "configuration": row.configuration.to_json(),
        "predicted": {"split": "calibration", **row.predicted},
    }


# A row's figures that are averaged over seeds (each seed has its own configurations).
SEED_MEANS = (
    "miou",
    "gflops",
    "latency_ms",
    "latency_p90_ms",
    "sum_of_parts_ms",
    "speedup",
    "miou_change_pp",
)


def combine_rows(
    per_seed: list[list[dict[str, Any]]], intervals: list[dict[str, Any]], seeds: list[int]
) -> list[dict[str, Any]]:
    """One row per setting over the seeds: the means of :data:`SEED_MEANS`, the standard
    deviations and intervals of the change in mIoU and of the speedup, and the static model's
    figures at the same constraint next to the dynamic answer's.

    Args:
        per_seed: each seed's :func:`row_json` rows, settings in the same order.
        intervals: per setting, :func:`bench.headline_stats.paired_bootstrap`'s answer.
        seeds: the training seeds, in the order of ``per_seed``.

    Returns:
        The rows: the first seed's configuration, prediction and exit fractions (each seed's
        under ``per_seed``), the means over seeds, ``delta_pp`` (the mean change in pp),
        ``speedup_std``, ``delta_pp_std``, ``miou_std``, ``delta_pp_ci95``, ``speedup_ci95``,
        ``static_speedup`` and ``static_delta_pp``.
    """
    out = []
    for i, first in enumerate(per_seed[0]):
        rows = [seed_rows[i] for seed_rows in per_seed]
        if any(r["setting"] != first["setting"] for r in rows):
            raise ValueError("the seeds' rows are not in the same order")
        row = dict(first)
        for key in SEED_MEANS:
            row[key] = float(np.mean([r[key] for r in rows]))
        row["miou_std"] = mean_std([r["miou"] for r in rows])[1]
        row["speedup_std"] = mean_std([r["speedup"] for r in rows])[1]
        row["delta_pp"], row["delta_pp_std"] = mean_std([r["miou_change_pp"] for r in rows])
        row["delta_pp_ci95"] = intervals[i]["delta_pp_ci95"]
        row["speedup_ci95"] = intervals[i]["speedup_ci95"]
        row["per_seed"] = [
            {
                "seed": seed,
                "miou": r["miou"],
                "speedup": r["speedup"],
                "miou_change_pp": r["miou_change_pp"],
                "exit_fractions": r["exit_fractions"],
                "configuration": r["configuration"],
            }
            for seed, r in zip(seeds, rows, strict=True)
        ]
        out.append(row)
    by = {r["setting"]: r for r in out}
    for row in out:
        static = by.get(f"{row['setting']}/static", row) if row["mode"] == "dynamic" else row
        row["static_speedup"] = static["speedup"]
        row["static_delta_pp"] = static["delta_pp"]
    return out


def ceiling(front: Any) -> dict[str, Any]:
    """The most accurate configuration of the space at any cost (calibration split).

    The search is exact, so no budget can buy more than this: a same-cost gain above
    ``gain_pp`` needs a better supernet, not a better search.
    """
    best = int(front.miou.argmax())
    return {
        "split": "calibration",
        "miou": float(front.miou[best]),
        "gain_pp": 100 * (float(front.miou[best]) - front.reference_miou),
        "latency_ms": float(front.exp[best]),
    }


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The paper's two headline claims, checked on the measured (test) numbers.

    Each is checked on the setting's answer (``met``) and, apart, on its static counterpart
    (``static``): MESS deploys either, and the search's calibration-split choice between
    them need not be the better one on the test split.
    """
    by = {r["setting"]: r for r in rows}

    def same_accuracy(row: dict[str, Any]) -> bool:
        return row["speedup"] >= GOAL_SPEEDUP and row["miou_change_pp"] >= SAME_ACCURACY_PP

    def same_cost(row: dict[str, Any]) -> bool:
        return row["miou_change_pp"] >= GOAL_GAIN_PP and row["speedup"] >= 1.0

    out = {}
    for key, setting, check, goal in (
        ("same_accuracy", "min-cost@0.1pp", same_accuracy, {"goal_speedup": GOAL_SPEEDUP}),
        ("same_cost", "max-accuracy@1x", same_cost, {"goal_pp": GOAL_GAIN_PP}),
    ):
        row, static = by[setting], by[f"{setting}/static"]
        out[key] = {
            "setting": setting,
            "speedup": row["speedup"],
            "miou_change_pp": row["miou_change_pp"],
            **goal,
            "met": check(row),
            "static": {
                "speedup": static["speedup"],
                "miou_change_pp": static["miou_change_pp"],
                "met": check(static),
            },
        }
    return out
