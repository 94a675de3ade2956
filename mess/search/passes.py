"""What every engine walks: a space's per-sample arrays and its passes.

A pass (:class:`Pass`) holds the rules and terminals of one pixel threshold (or, with
per-exit thresholds, of all of them) as the arrays the numba kernel
(:mod:`mess.search.kernels`) and the matrix-product engine (:mod:`mess.search.blas`) read;
:class:`Prepared` builds them once per space. A fleet search prepares K spaces that differ
only in their cost tables: everything but the cost arrays (one row per table) is shared.
:func:`kernel_ranks` turns either engine's output rows into rank rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mess.search.problem import SearchSpace


@dataclass
class Pass:
    """The rules and terminals of one pass, sorted by depth, as kernel arrays."""

    n_grid: int
    bins: np.ndarray  # (R, N) uint8
    rule_exit: np.ndarray  # (R,) int64
    rule_code: np.ndarray  # (R,) int64: rank code of the rule at grid index 0
    rule_reach: np.ndarray  # (K, R) float64, one row per cost table
    rule_head: np.ndarray  # (K, R)
    rule_policy: np.ndarray  # (K, R)
    first_child: np.ndarray  # (R,) int64
    term_exit: np.ndarray  # (Tm,) int64, final last
    term_reach: np.ndarray  # (K, Tm)
    term_head: np.ndarray  # (K, Tm)
    term_first: np.ndarray  # (R,) int64

    @property
    def num_rules(self) -> int:
        return int(self.bins.shape[0])


class Prepared:
    """Per-sample rows shared by every pass of a space, and each pass's arrays.

    Args:
        spaces: one space per cost table, equal but for their problems' costs.
    """

    def __init__(self, spaces: Sequence[SearchSpace]) -> None:
        space = spaces[0]
        p = space.problem
        st = p.stats
        n, c = p.num_samples, p.num_classes
        total = int(st.target.sum(dtype=np.int64))
        # difference arrays hold partial sums up to twice the pixel total
        dtype = np.int32 if 2 * total + 2 * n < 2**31 - 1 else np.int64
        # columns: intersection (C), predicted (C), zero padding, count (last); a multiple
        # of 8 wide so that the kernel's row additions are whole vector operations
        w = -(-(2 * c + 1) // 8) * 8
        x = np.zeros((p.num_exits + 1, n, w), dtype=dtype)
        x[:, :, :c] = st.intersection.transpose(1, 0, 2)
        x[:, :, c : 2 * c] = st.predicted.transpose(1, 0, 2)
        x[: p.num_exits, :, w - 1] = 1
        self.x_all = x
        self.dx_all = x[p.num_exits][None] - x[: p.num_exits]
        self.conf32 = st.confidence.astype(np.float32, copy=False)
        self.space = space
        self.problems = [s.problem for s in spaces]

    def passes(self) -> list[tuple[int, Pass]]:
        """``(tp or -1, pass)`` for every pass of the space."""
        sp = self.space
        if sp.per_exit_thresholds:
            return [(-1, self._pass(None))]
        return [(tp, self._pass(tp)) for tp in range(sp.num_tp)]

    def _pass(self, tp: int | None) -> Pass:
        sp, p = self.space, self.space.problem
        pos = p.position
        rules: list[tuple[int, int, int, int]] = []  # (position, code, exit, ti or -1)
        for e in sp.exits:
            if tp is not None:
                rules.append((int(pos[e]), sp.rule_code(e, tp, 0), e, -1))
            else:
                for t in range(sp.num_tp):
                    for j in range(sp.num_ti):
                        rules.append((int(pos[e]), sp.rule_code(e, t, j), e, j))
        rules.sort()
        r_exit = np.array([r[2] for r in rules], dtype=np.int64)
        r_code = np.array([r[1] for r in rules], dtype=np.int64)
        r_pos = np.array([r[0] for r in rules], dtype=np.int64)
        n = p.num_samples
        bins = np.zeros((len(rules), n), dtype=np.uint8)
        for i, (_, code, e, j) in enumerate(rules):
            _, t, _ = sp.decode_rule(code)
            scores = self.conf32[:, e, t]
            if j < 0:  # number of grid values a sample passes: passes at j iff bin > j
                bins[i] = np.searchsorted(sp.grid32, scores, side="right")
            else:
                bins[i] = scores >= sp.grid32[j]
        terms = sorted(sp.exits, key=lambda e: (pos[e], e)) if sp.truncation else []
        t_exit = np.array([*terms, p.num_exits], dtype=np.int64)
        t_pos = np.array([*(int(pos[e]) for e in terms), np.iinfo(np.int64).max], dtype=np.int64)
        return Pass(
            n_grid=sp.num_ti if tp is not None else 1,
            bins=bins,
            rule_exit=r_exit,
            rule_code=r_code,
            rule_reach=np.stack([q.reach[r_exit] for q in self.problems]),
            rule_head=np.stack([q.head[r_exit] for q in self.problems]),
            rule_policy=np.stack([q.policy[r_exit] for q in self.problems]),
            first_child=np.searchsorted(r_pos, r_pos, side="right").astype(np.int64),
            term_exit=t_exit,
            term_reach=np.array(
                [[q.terminal_costs(int(t))[0] for t in t_exit] for q in self.problems]
            ),
            term_head=np.array(
                [[q.terminal_costs(int(t))[1] for t in t_exit] for q in self.problems]
            ),
            term_first=np.searchsorted(t_pos, r_pos, side="right").astype(np.int64),
        )


def kernel_ranks(ps: Pass, out_i: np.ndarray, width: int) -> np.ndarray:
    """Rank rows ``[k, v_1..v_k, -1.., terminal]`` of kernel outputs."""
    level = out_i[:, 0]
    j = out_i[:, -1]
    ranks = np.full((len(out_i), width), -1, dtype=np.int64)
    ranks[:, 0] = level
    for q in range(1, width - 1):
        rule = out_i[:, q]
        ok = q <= level
        ranks[ok, q] = ps.rule_code[rule[ok]] + j[ok]
    ranks[:, -1] = ps.term_exit[out_i[:, -2]]
    return ranks
