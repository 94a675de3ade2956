"""The fast exact evaluator: every configuration of a :class:`SearchSpace`, no sampling.

Work is organised in passes: with shared thresholds one pass per pixel threshold, whose
rules are the considered exits and whose image thresholds are handled all at once through
bins (:mod:`mess.search.kernels`); with per-exit thresholds one pass whose rules are every
(exit, pixel threshold, image threshold) triple, each with a single pass/fail bin. In a pass,
chains of one rule are walked as level-1 prefixes and longer chains below level-2 prefixes
(pairs), in chunks of about equal work, on as many threads as there are cores (the numba
kernel releases the GIL). Each chunk returns the configurations its Pareto filter could not
rule out; the main thread merges them into the exact front (:mod:`mess.search.front`), so
the front and every objective's answer come from this single pass over the space.

Backends: ``numba`` (compiled kernel, the CPU default when numba is installed), ``numpy``
and ``torch`` (the same sums as batched matrix products, :mod:`mess.search.blas`; ``torch``
runs on CUDA when the device resolves to it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from mess.search.configuration import Configuration
from mess.search.front import FilterGrid, ParetoFront, exact_front
from mess.search.kernels import HAVE_NUMBA, walk
from mess.search.space import SearchSpace
from mess.space import FINAL

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
_CAPACITY = 1 << 18


@dataclass
class Pass:
    """The rules and terminals of one pass, sorted by depth, as kernel arrays."""

    n_grid: int
    bins: np.ndarray  # (R, N) uint8
    rule_exit: np.ndarray  # (R,) int64
    rule_code: np.ndarray  # (R,) int64: rank code of the rule at grid index 0
    rule_reach: np.ndarray
    rule_head: np.ndarray
    rule_policy: np.ndarray
    first_child: np.ndarray  # (R,) int64
    term_exit: np.ndarray  # (Tm,) int64, final last
    term_reach: np.ndarray
    term_head: np.ndarray
    term_first: np.ndarray  # (R,) int64

    @property
    def num_rules(self) -> int:
        return int(self.bins.shape[0])


class Prepared:
    """Per-sample rows and cost arrays shared by every pass of a space."""

    def __init__(self, space: SearchSpace) -> None:
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
            rule_reach=p.reach[r_exit].copy(),
            rule_head=p.head[r_exit].copy(),
            rule_policy=p.policy[r_exit].copy(),
            first_child=np.searchsorted(r_pos, r_pos, side="right").astype(np.int64),
            term_exit=t_exit,
            term_reach=np.array([p.terminal_costs(int(t))[0] for t in t_exit]),
            term_head=np.array([p.terminal_costs(int(t))[1] for t in t_exit]),
            term_first=np.searchsorted(t_pos, r_pos, side="right").astype(np.int64),
        )


def subtree_sizes(ps: Pass, max_depth: int) -> np.ndarray:
    """``(R, max_depth + 1)``: configurations below a node at level ``l`` ending with rule
    ``r`` (its own included), for ``l`` in 1..max_depth (column 0 unused)."""
    r = ps.num_rules
    n_term = len(ps.term_exit)
    own = (n_term - ps.term_first) * ps.n_grid
    sub = np.zeros((r, max_depth + 2), dtype=np.int64)
    for level in range(max_depth, 0, -1):
        below = np.zeros(r, dtype=np.int64)
        if level < max_depth:
            suffix = np.concatenate([np.cumsum(sub[::-1, level + 1])[::-1], [0]])
            below = suffix[ps.first_child]
        sub[:, level] = own + below
    return sub


def pairs(ps: Pass) -> np.ndarray:
    """Every chain of two rules at strictly increasing depth, ``(P, 2)``."""
    r = ps.num_rules
    counts = r - ps.first_child
    first = np.repeat(np.arange(r), counts)
    starts = np.repeat(ps.first_child, counts)
    offsets = np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.stack([first, starts + offsets], axis=1).astype(np.int64)


class _Progress:
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
    """Candidates merged into the exact front as they arrive."""

    def __init__(self, space: SearchSpace, grid: FilterGrid) -> None:
        self.width = space.max_exits + 2
        self.exp = np.zeros(0)
        self.worst = np.zeros(0)
        self.miou = np.zeros(0)
        self.ranks = np.zeros((0, self.width), dtype=np.int64)
        self.grid = grid

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


def state_counts(ps: Pass, max_depth: int) -> np.ndarray:
    """``(R, max_depth + 1)``: nodes at level ``max_depth - 1`` below (or equal to) a node
    at level ``l`` ending with rule ``r``."""
    r = ps.num_rules
    out = np.zeros((r, max_depth + 1), dtype=np.int64)
    top = max_depth - 1
    if top < 1:
        return out
    out[:, top] = 1
    for level in range(top - 1, 0, -1):
        suffix = np.concatenate([np.cumsum(out[::-1, level + 1])[::-1], [0]])
        out[:, level] = suffix[ps.first_child]
    return out


def _numba_chunk(
    prep: Prepared,
    ps: Pass,
    prefixes: np.ndarray,
    max_depth: int,
    n_states: int,
    grid: FilterGrid,
    front: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk one chunk (again with more room after a full buffer); returns the outputs and
    the raised grid."""
    sp = prep.space
    g = grid.grid.copy()
    cap = _CAPACITY
    while True:
        out_f = np.empty((cap, 3))
        out_i = np.empty((cap, sp.max_exits + 3), dtype=np.int64)
        n_out = walk(
            prefixes,
            max_depth,
            n_states,
            ps.n_grid,
            sp.problem.num_classes,
            ps.bins,
            ps.rule_exit,
            ps.rule_code,
            ps.rule_reach,
            ps.rule_head,
            ps.rule_policy,
            ps.first_child,
            prep.x_all,
            prep.dx_all,
            ps.term_exit,
            ps.term_reach,
            ps.term_head,
            ps.term_first,
            sp.problem.target_sum,
            g,
            grid.edge_x,
            grid.edge_w,
            front[0],
            front[1],
            out_f,
            out_i,
        )
        if n_out >= 0:
            return out_f[:n_out].copy(), out_i[:n_out].copy(), g
        cap *= 2


def run(
    space: SearchSpace,
    *,
    backend: str = "numba",
    device: str = "cpu",
    progress: Any = None,
    threads: int | None = None,
) -> ParetoFront:
    """Evaluate every configuration of ``space`` and return the exact front.

    Args:
        space: the search space.
        backend: ``"numba"``, ``"numpy"`` or ``"torch"``.
        device: torch device for the ``torch`` backend.
        progress: ``callable(done, total)`` or a rich ``Progress``.
        threads: worker threads for the numba backend (default: usable cores).

    Returns:
        The :class:`ParetoFront` (metrics of its points from the naive evaluator).
    """
    t0 = time.perf_counter()
    p = space.problem
    total = space.size()
    bar = _Progress(progress, total)
    considered = space.exits
    costs0 = [p.reach_final + p.head_final] + [p.reach[e] + p.head[e] for e in considered]
    hi = (
        p.reach_final
        + space.max_exits * float(max((p.head + p.policy)[considered], default=0.0))
        + max([p.head_final, *p.head[considered].tolist()])
    )
    collector = Collector(space, FilterGrid.empty(min(costs0), hi))

    # k = 0: the original network and, with truncation, each exit alone
    base = [Configuration((), FINAL)]
    if space.truncation:
        base += [Configuration((), p.exit_ids[e]) for e in considered]
    rows = np.full((len(base), space.max_exits + 2), -1, dtype=np.int64)
    metrics = [p.evaluate(c) for c in base]
    for i, c in enumerate(base):
        rows[i, 0] = 0
        rows[i, -1] = p.exit_index(c.terminal)
    collector.add(
        np.array([m.expected_cost for m in metrics]),
        np.array([m.worst_cost for m in metrics]),
        np.array([m.miou for m in metrics]),
        rows,
    )
    bar.advance(len(base))

    if space.max_exits >= 1:
        prep = Prepared(space)
        if backend == "numba":
            _run_numba(prep, collector, bar, threads)
        else:
            from mess.search.blas import run_blas

            run_blas(prep, collector, bar, backend=backend, device=device)
    return _finish(space, collector, total, time.perf_counter() - t0)


def _chunks(
    sizes: np.ndarray, target: int, states: np.ndarray | None = None, max_states: int = 0
) -> list[tuple[int, int]]:
    """Consecutive ranges of about ``target`` work (and at most ``max_states`` stored
    nodes, so that a chunk's nodes stay in cache)."""
    out = []
    start = 0
    acc = 0
    held = 0
    st = states.tolist() if states is not None else [0] * len(sizes)
    for i, (s, n) in enumerate(zip(sizes.tolist(), st, strict=True)):
        if i > start and max_states and held + n > max_states:
            out.append((start, i))
            start, acc, held = i, 0, 0
        acc += s
        held += n
        if acc >= target:
            out.append((start, i + 1))
            start, acc, held = i + 1, 0, 0
    if start < len(sizes):
        out.append((start, len(sizes)))
    return out


def _run_numba(prep: Prepared, collector: Collector, bar: _Progress, threads: int | None) -> None:
    sp = prep.space
    if threads:
        workers = threads
    elif hasattr(os, "sched_getaffinity"):
        workers = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - platforms without affinity
        workers = os.cpu_count() or 1
    # (pass, prefixes, depth, stored nodes, configurations); chains of one exit go first so
    # that the front they give filters the rest
    singles: list[tuple[Pass, np.ndarray, int, int, int]] = []
    longer: list[tuple[Pass, np.ndarray, int, int, int]] = []
    for _, ps in prep.passes():
        sub = subtree_sizes(ps, sp.max_exits)
        ones = np.arange(ps.num_rules, dtype=np.int64)[:, None]
        own = (len(ps.term_exit) - ps.term_first) * ps.n_grid
        for a, b in _chunks(own, 1 << 20):
            singles.append((ps, ones[a:b], 1, 0, int(own[a:b].sum())))
        if sp.max_exits >= 2:
            pr = pairs(ps)
            sizes = sub[pr[:, 1], 2]
            states = state_counts(ps, sp.max_exits)[pr[:, 1], 2]
            target = max(1, min(int(sizes.sum()) // (workers * 16) + 1, 1 << 22))
            for a, b in _chunks(sizes, target, states, 512):
                n_states = int(states[a:b].sum())
                longer.append((ps, pr[a:b], sp.max_exits, n_states, int(sizes[a:b].sum())))
    width = sp.max_exits + 2
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mess-search")
    try:
        for jobs in (singles, longer):
            pending: dict[Future[Any], tuple[Pass, int]] = {}
            queue = list(reversed(jobs))
            while queue or pending:
                while queue and len(pending) < 2 * workers:
                    ps, prefixes, depth, n_states, n_configs = queue.pop()
                    fut = pool.submit(
                        _numba_chunk,
                        prep,
                        ps,
                        prefixes,
                        depth,
                        n_states,
                        collector.grid,
                        collector.snapshot(),
                    )
                    pending[fut] = (ps, n_configs)
                done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    ps, n_configs = pending.pop(fut)
                    out_f, out_i, g = fut.result()
                    collector.add(
                        out_f[:, 0], out_f[:, 1], out_f[:, 2], kernel_ranks(ps, out_i, width)
                    )
                    np.maximum(collector.grid.grid, g, out=collector.grid.grid)
                    bar.advance(n_configs)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _finish(space: SearchSpace, col: Collector, total: int, seconds: float) -> ParetoFront:
    p = space.problem
    n = len(col.exp)
    p90 = np.zeros(n)
    counts = np.full((n, space.max_exits + 1), -1, dtype=np.int64)
    for i in range(n):
        m = p.evaluate(space.configuration(_rank_tuple(col.ranks[i])))
        p90[i] = m.p90_cost
        counts[i, : len(m.counts)] = m.counts
    reference = p.evaluate(Configuration((), FINAL)).miou
    return ParetoFront(
        exp=col.exp,
        worst=col.worst,
        miou=col.miou,
        p90=p90,
        ranks=col.ranks,
        counts=counts,
        space={
            "exit_ids": p.exit_ids,
            "pixel_thresholds": p.pixel_thresholds,
            "image_thresholds": space.image_thresholds,
            "num_samples": p.num_samples,
            "max_exits": space.max_exits,
            "per_exit_thresholds": space.per_exit_thresholds,
            "truncation": space.truncation,
            "exits": [p.exit_ids[e] for e in space.exits],
            "unit": p.costs.unit,
        },
        reference_miou=reference,
        configs_evaluated=total,
        seconds=seconds,
    )


def _rank_tuple(row: np.ndarray) -> tuple[int, ...]:
    k = int(row[0])
    return (k, *(int(v) for v in row[1 : 1 + k]), int(row[-1]))


__all__ = ["HAVE_NUMBA", "Prepared", "run"]
