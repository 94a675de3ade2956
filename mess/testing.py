"""Random but valid exit statistics and cost tables, for tests and benchmarks (torch-free).

The statistics look like a real supernet's: deeper exits are more accurate, samples vary in
difficulty, and an exit's image scores rise with its accuracy on the sample, so that the
search has real trade-offs to find.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from mess.costs import CostTable, validate_costs
from mess.space import FINAL, full_space
from mess.stats import Stats, validate_stats


def _head_ids(count: int) -> list[str]:
    heads = [h.id for h in full_space()]
    if count <= len(heads):
        return heads[:count]
    return heads + [f"extra{i}" for i in range(count - len(heads))]


def random_stats(
    *,
    num_samples: int = 20,
    num_classes: int = 4,
    positions: int = 4,
    heads: int = 2,
    pixel_thresholds: Sequence[float] = (0.5, 0.7, 0.9),
    max_pixels: int = 4096,
    seed: int = 0,
) -> Stats:
    """Exit statistics of ``positions x heads`` early exits plus ``final``.

    Args:
        num_samples: ``N``.
        num_classes: ``C``.
        positions: candidate exit positions (``block0..``), in depth order.
        heads: heads per position (canonical head ids).
        pixel_thresholds: the ``T`` pixel thresholds, increasing.
        max_pixels: most labelled pixels per sample (at least 1 each).
        seed: random seed; equal arguments give equal stats.

    Returns:
        Validated :class:`Stats`.
    """
    rng = np.random.default_rng(seed)
    n, c, t = num_samples, num_classes, len(pixel_thresholds)
    head_ids = _head_ids(heads)
    exits = [
        {"id": f"block{p}/{h}", "position": f"block{p}", "position_index": p, "head": h}
        for p in range(positions)
        for h in head_ids
    ]
    e1 = len(exits) + 1
    # exit quality grows with depth (final best); heads at one position differ a little
    depth = np.array([ex["position_index"] for ex in exits] + [positions], dtype=np.float64)
    quality = 0.35 + 0.5 * (depth + 1) / (positions + 1) + rng.normal(0, 0.04, e1)
    quality[-1] = 0.9
    difficulty = rng.beta(2, 3, n) * 0.5
    pixels = rng.integers(1, max_pixels + 1, n)
    shares = rng.dirichlet(np.full(c, 0.6), n)
    target = rng.multinomial(pixels, shares).astype(np.int64)
    acc = np.clip(quality[None, :] - difficulty[:, None] + rng.normal(0, 0.08, (n, e1)), 0.02, 1)
    inter = rng.binomial(target[:, None, :], acc[:, :, None]).astype(np.int64)
    wrong = (target[:, None, :] - inter).sum(axis=2)
    spread = rng.dirichlet(np.ones(c), (n, e1))
    predicted = inter + rng.multinomial(wrong, spread).astype(np.int64)
    # scores: a noisy function of the sample's accuracy, falling with the pixel threshold
    base = np.clip(acc + rng.normal(0, 0.1, (n, e1)), 0, 1)
    falls = np.cumsum(rng.uniform(0.05, 0.35, (n, e1, t)), axis=2) - 0.05
    confidence = np.clip(base[:, :, None] - falls * (1 - base[:, :, None]), 0, 1)
    confidence = np.round(confidence.astype(np.float32) * 64) / 64  # ties happen
    meta = {
        "format": "mess-stats",
        "version": 1,
        "num_classes": c,
        "class_names": [f"class{i}" for i in range(c)],
        "ignore_index": 255,
        "pixel_thresholds": [float(x) for x in pixel_thresholds],
        "exits": exits,
        "num_samples": n,
        "supernet": f"random-{seed}",
    }
    stats = Stats(
        meta=json.loads(json.dumps(meta)),
        intersection=inter,
        predicted=predicted,
        target=target,
        confidence=confidence.astype(np.float32),
    )
    validate_stats(stats)
    return stats


def random_costs(
    stats: Stats, *, unit: str = "ms", seed: int = 0, integers: bool = False
) -> CostTable:
    """A cost table for ``stats``: growing backbone segments, heads of varied cost.

    Args:
        stats: the statistics whose exits need costs.
        unit: ``"ms"`` or ``"gflops"``.
        seed: random seed.
        integers: whole-number costs (many exact ties, for tie-rule tests).

    Returns:
        A validated :class:`CostTable`.
    """
    rng = np.random.default_rng(seed + 7919)
    positions = sorted({(e["position_index"], e["position"]) for e in stats.exits})

    def value(lo: float, hi: float) -> float:
        v = rng.uniform(lo, hi)
        return float(round(v)) if integers else round(float(v), 4)

    segments = {name: value(1, 6) for _, name in positions}
    segments[FINAL] = value(1, 4)
    heads = {e["id"]: value(0, 4) for e in stats.exits}
    heads[FINAL] = value(0, 2)
    policy = {e["id"]: value(0, 1) for e in stats.exits}
    table = CostTable(
        unit=unit,
        statistic="median" if unit == "ms" else "exact",
        device={"name": "random"} if unit == "ms" else None,
        segments=segments,
        heads=heads,
        policy=policy,
    )
    validate_costs(table)
    return table
