"""The headline's protocol statistics (numpy only): the paired bootstrap over test images, the
balance of the splits' difficulty and the regime checks of the original network.

See docs/DESIGN.md, "Testing and benchmarks".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mess.data.synth import difficulty_balance

CONVERGED_PP = 0.5  # validation mIoU at the budget vs twice the budget, at most this apart
LEVEL = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Paired:
    """One training seed's test images under a tailored model and under that seed's original
    network, image by image (``[N, C]`` intersection/union counts, ``[N]`` latency in ms)."""

    intersection: np.ndarray
    union: np.ndarray
    latency_ms: np.ndarray
    base_intersection: np.ndarray
    base_union: np.ndarray
    base_latency_ms: np.ndarray


def per_image_latency(latency_ms: Sequence[float], images: int) -> np.ndarray:
    """Mean latency of each image over the rounds of a pooled evaluation (round after round)."""
    lat = np.asarray(latency_ms, dtype=np.float64)
    if images < 1 or lat.size % images:
        raise ValueError(f"{lat.size} latencies are not whole rounds of {images} images")
    return lat.reshape(-1, images).mean(axis=0)


def resampled_miou(weights: np.ndarray, intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """The dataset mIoU of each resample, from how often it draws each image.

    Args:
        weights: ``[B, N]`` draws of each image per resample.
        intersection, union: ``[N, C]`` per-image counts.

    Returns:
        ``[B]`` mIoUs, classes with an empty union left out (as :func:`mess.stats.miou_from_sums`).
    """
    inter = weights @ intersection.astype(np.float64)
    uni = weights @ union.astype(np.float64)
    kept = uni > 0
    iou = np.divide(inter, uni, out=np.zeros_like(inter), where=kept)
    count = kept.sum(axis=1)
    return np.divide(iou.sum(axis=1), count, out=np.zeros(len(iou)), where=count > 0)


def _delta_and_speedup(weights: np.ndarray, pairs: Sequence[Paired]) -> tuple[np.ndarray, ...]:
    delta, speedup = [], []
    n = weights.sum(axis=1)
    for p in pairs:
        model = resampled_miou(weights, p.intersection, p.union)
        base = resampled_miou(weights, p.base_intersection, p.base_union)
        delta.append(100 * (model - base))
        speedup.append((weights @ p.base_latency_ms / n) / (weights @ p.latency_ms / n))
    return np.mean(delta, axis=0), np.mean(speedup, axis=0)


def paired_bootstrap(
    pairs: Sequence[Paired],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Percentile intervals for the change in mIoU (pp) and the speedup, seeds pooled.

    Every training seed sees the same test images, so one resample of the image indices
    (with replacement) serves every seed: each seed's tailored model and original network
    are evaluated on it (the dataset mIoU recomputed from the per-image counts, the speedup
    as the ratio of mean latencies), and the resample's statistic is the mean over seeds.
    The interval is over test images, the seeds held fixed; their spread is the std across
    seeds, reported apart.

    Returns:
        ``delta_pp`` and ``speedup`` (means over seeds on all images), ``delta_pp_ci95`` and
        ``speedup_ci95`` (``[lo, hi]``), ``resamples``, ``seed``.

    Raises:
        ValueError: no seeds, or seeds with different numbers of test images.
    """
    if not pairs:
        raise ValueError("the bootstrap needs at least one seed")
    sizes = {len(a) for p in pairs for a in (p.latency_ms, p.base_latency_ms, p.union)}
    if len(sizes) != 1:
        raise ValueError(f"every seed must pair the same test images, got sizes {sorted(sizes)}")
    n = sizes.pop()
    everything = np.ones((1, n))
    delta, speedup = (float(x[0]) for x in _delta_and_speedup(everything, pairs))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    weights = np.zeros((resamples, n))
    np.add.at(weights, (np.arange(resamples)[:, None], draws), 1.0)
    deltas, speedups = _delta_and_speedup(weights, pairs)
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return {
        "delta_pp": delta,
        "speedup": speedup,
        "delta_pp_ci95": [float(x) for x in np.percentile(deltas, tails)],
        "speedup_ci95": [float(x) for x in np.percentile(speedups, tails)],
        "resamples": resamples,
        "seed": seed,
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0


def split_balance(difficulties: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Mean difficulty of each split, its standard deviation and standard error, and the
    pairs of splits whose means differ by more than the standard error of the difference
    (:func:`mess.data.synth.difficulty_balance`), as the JSON line reports them.

    Returns:
        ``{"difficulty": {split: {"images", "mean", "std", "sem"}}, "unbalanced": [[a, b]],
        "balanced": bool}``.
    """
    balance = difficulty_balance(difficulties)
    per = {
        split: {"images": v["n"], "mean": v["mean"], "std": v["std"], "sem": v["se"]}
        for split, v in balance["splits"].items()
    }
    unbalanced = [[a, b] for (a, b), z in balance["gaps_se"].items() if z > 1.0]
    return {"difficulty": per, "unbalanced": unbalanced, "balanced": not unbalanced}


def depth_profile(exits: Sequence[Mapping[str, Any]], mious: Sequence[float]) -> dict[str, Any]:
    """Each head's mIoU position by position, and where it falls going deeper.

    Args:
        exits: the stats' early-exit metadata (``position``, ``position_index``, ``head``).
        mious: each exit's mIoU, in the same order.

    Returns:
        ``{head: {"positions": [...], "miou": [...], "drops": [position, ...]}}``.
    """
    by_head: dict[str, list[tuple[int, str, float]]] = {}
    for e, m in zip(exits, mious, strict=True):
        by_head.setdefault(str(e["head"]), []).append(
            (int(e["position_index"]), str(e["position"]), float(m))
        )
    out = {}
    for head, points in by_head.items():
        points.sort()
        values = [m for _, _, m in points]
        drops = [points[i][1] for i in range(1, len(points)) if values[i] < values[i - 1]]
        out[head] = {"positions": [p for _, p, _ in points], "miou": values, "drops": drops}
    return out


def final_minus_best_shallow_pp(
    exits: Sequence[Mapping[str, Any]], mious: Sequence[float], final_miou: float
) -> float | None:
    """``final``'s mIoU minus the best exit's in the first half of the backbone's positions
    (position index below half their number), in pp; None without such an exit."""
    count = len({int(e["position_index"]) for e in exits})
    shallow = [m for e, m in zip(exits, mious, strict=True) if int(e["position_index"]) < count / 2]
    return 100 * (final_miou - max(shallow)) if shallow else None


def regime_checks(
    *,
    exits: Sequence[Mapping[str, Any]],
    mious: Sequence[float],
    final_miou: float,
    convergence: Mapping[str, Any] | None,
    original_steps: int,
    head_steps: int,
) -> dict[str, Any]:
    """The original network's regime on validation data (never the test split).

    Args:
        exits, mious, final_miou: every exit's mIoU on the calibration split (exact, from the
            exit statistics).
        convergence: ``{"budget_miou", "double_miou", ...}``: ``final``'s validation mIoU
            after the stage-1 budget and after twice it; None when not measured.
        original_steps, head_steps: optimizer steps of stage 1 (backbone and ``final``) and
            of stage 2 (the heads).

    Returns:
        ``converged`` (``|convergence_delta_pp| < 0.5``; False when not measured),
        ``convergence_delta_pp`` (None when not measured), ``final_minus_best_shallow_pp``,
        ``final_beats_shallow``, ``depth`` (:func:`depth_profile`), ``depth_monotone``,
        the step counts and
        ``enough_steps`` (the original got at least the heads' steps).
    """
    delta = None
    if convergence is not None:
        delta = 100 * (float(convergence["double_miou"]) - float(convergence["budget_miou"]))
    margin = final_minus_best_shallow_pp(exits, mious, final_miou)
    depth = depth_profile(exits, mious)
    return {
        "split": "calibration",
        "converged": delta is not None and abs(delta) < CONVERGED_PP,
        "convergence_delta_pp": delta,
        "convergence": dict(convergence) if convergence is not None else None,
        "final_minus_best_shallow_pp": margin,
        "final_beats_shallow": margin is not None and margin > 0,
        "depth": depth,
        "depth_monotone": not any(d["drops"] for d in depth.values()),
        "original_steps": original_steps,
        "head_steps": head_steps,
        "enough_steps": original_steps >= head_steps,
    }
