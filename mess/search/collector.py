"""What an engine hands its results to: the exact front's collector and the progress count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mess.search.front import FilterGrid, exact_front
from mess.search.problem import SearchSpace

ProgressFn = Callable[[int, int], None]


class Progress:
    """Configurations evaluated so far, reported to a callable or a rich ``Progress``."""

    def __init__(self, progress: Any, total: int) -> None:
        self.total = total
        self.done = 0
        self.fn: ProgressFn | None = None
        if progress is None:
            return
        if hasattr(progress, "add_task") and hasattr(progress, "update"):
            task = progress.add_task("search", total=total)
            self.fn = lambda done, tot: progress.update(task, completed=done, total=tot)
        else:
            self.fn = progress

    def advance(self, n: int) -> None:
        self.done += n
        if self.fn is not None:
            self.fn(min(self.done, self.total), self.total)


class Collector:
    """Candidates merged into the exact front as they arrive (:meth:`add`), or held and
    merged in batches (:meth:`hold`, :meth:`merge`): each merge costs a sort of the front,
    whatever the number of candidates, and a fleet search has one collector per table."""

    HOLD = 4096  # candidates held before a merge, at least (or as many as the front has)

    def __init__(self, space: SearchSpace, grid: FilterGrid) -> None:
        self.width = space.max_exits + 2
        self.exp = np.zeros(0)
        self.worst = np.zeros(0)
        self.miou = np.zeros(0)
        self.ranks = np.zeros((0, self.width), dtype=np.int64)
        self.grid = grid
        self.held: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.n_held = 0

    def hold(self, exp: np.ndarray, worst: np.ndarray, miou: np.ndarray, ranks: np.ndarray) -> bool:
        """Keep candidates for a later merge; merges when enough are held. Returns whether
        the front changed."""
        if len(exp):
            self.held.append((exp, worst, miou, ranks))
            self.n_held += len(exp)
        if self.n_held >= max(self.HOLD, len(self.exp)):
            return self.merge()
        return False

    def merge(self) -> bool:
        """Merge the held candidates into the front; returns whether there were any."""
        if not self.held:
            return False
        parts = list(zip(*self.held, strict=True))
        self.held, self.n_held = [], 0
        self.add(*(np.concatenate(p) for p in parts))
        return True

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """``(3, F)`` (expected, worst, mIoU) of the front by expected cost, and its ranks."""
        order = np.argsort(self.exp, kind="stable")
        metrics = np.stack([self.exp, self.worst, self.miou])[:, order]
        return np.ascontiguousarray(metrics), np.ascontiguousarray(self.ranks[order])

    def add(self, exp: np.ndarray, worst: np.ndarray, miou: np.ndarray, ranks: np.ndarray) -> None:
        if len(exp) == 0:
            return
        e = np.concatenate([self.exp, exp])
        w = np.concatenate([self.worst, worst])
        m = np.concatenate([self.miou, miou])
        r = np.concatenate([self.ranks, ranks])
        keep = exact_front(e, w, m, r)
        self.exp, self.worst, self.miou, self.ranks = e[keep], w[keep], m[keep], r[keep]
        self.grid.raise_to(self.exp, self.worst, self.miou)
