"""How well a sample of run times knows its median: a distribution-free confidence interval.

The interval is the classic one from order statistics (the sign-test interval): with ``n``
independent runs, the number ``B`` of runs below the true median is Binomial(n, 1/2), so the
``l``-th and ``(n - l + 1)``-th smallest runs bound the median with probability
``1 - 2 P(B <= l - 1)``; ``l`` is the largest rank that keeps that at or above the confidence.
No assumption on the shape of the distribution (run times are skewed, with a long right tail);
exact for any ``n``, no resampling, so cheap enough to check every few runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95


@functools.lru_cache(maxsize=1024)
def median_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """1-based ranks ``(l, u)`` of the order statistics bounding the median of ``n`` runs.

    ``None`` when ``n`` is too small for the confidence (5 runs or fewer at 95 %).
    """
    alpha = (1 - confidence) / 2
    # terms more than 8 standard deviations below n/2 add less than 1e-15 to the tail
    start = max(0, math.floor(n / 2 - 4 * math.sqrt(n)))
    log_norm = math.lgamma(n + 1) - n * math.log(2)
    tail, rank = 0.0, 0
    for k in range(start, n // 2 + 1):
        tail += math.exp(log_norm - math.lgamma(k + 1) - math.lgamma(n - k + 1))
        if tail > alpha:
            break
        rank = k + 1
    if rank == 0:
        return None
    return rank, n - rank + 1


def median_halfwidth(samples: Sequence[float], confidence: float = CONFIDENCE) -> float | None:
    """Half-width of the median's confidence interval relative to the median.

    The larger of the two sides (the interval is not symmetric for skewed run times), so that
    0.02 means the interval lies within +-2 % of the median. ``None`` for too few samples.
    """
    ranks = median_ranks(len(samples), confidence)
    if ranks is None:
        return None
    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    median = float(np.median(ordered))
    if median <= 0:
        return None
    low, high = float(ordered[ranks[0] - 1]), float(ordered[ranks[1] - 1])
    return max(median - low, high - median) / median
