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

A fleet search (several cost tables over one space) walks the space once: the sample sums
and mIoU of each configuration are shared, and each table keeps its own filter grid,
collector and front (docs/DESIGN.md, "Search"). A single-table search is the fleet of one.

A sharded search (:mod:`mess.search.shards`) walks only its shard's first-level subtrees
(:func:`portion`), in every engine, and records its part in its fronts.

Backends: ``numba`` (compiled kernel, the CPU default when numba is installed), ``numpy``
and ``torch`` (the same sums as batched matrix products, :mod:`mess.search.blas`; ``torch``
runs on CUDA when the device resolves to it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from mess.search.blas import run_blas
from mess.search.collector import Collector, Progress
from mess.search.configuration import Configuration
from mess.search.front import FilterGrids, ParetoFront
from mess.search.kernels import walk
from mess.search.passes import Pass, Prepared, kernel_ranks
from mess.search.problem import SearchSpace
from mess.search.shards import Shard, assign
from mess.space import FINAL

log = logging.getLogger(__name__)

_CAPACITY = 1 << 18


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


def portion(
    passes: Sequence[Pass], max_depth: int, n_base: int, shard: Shard | None
) -> tuple[bool, list[np.ndarray], int]:
    """A shard's part of the space: whether it holds the ``n_base`` configurations without
    early exits, the first rules whose subtrees it walks (a mask per pass), and its number
    of configurations. The units (those base configurations, and each pass's level-1
    subtrees) are dealt by :func:`mess.search.shards.assign` on their sizes."""
    first = [subtree_sizes(ps, max_depth)[:, 1] for ps in passes]
    if shard is None or shard.count == 1:
        return (
            True,
            [np.ones(len(f), dtype=bool) for f in first],
            n_base + sum(int(f.sum()) for f in first),
        )
    weights = np.concatenate([[n_base], *first]).astype(np.int64)
    mine = assign(weights, shard.count) == shard.index
    masks = np.split(mine[1:], np.cumsum([len(f) for f in first])[:-1])
    size = int(weights[mine].sum())
    return bool(mine[0]), masks, size


def pairs(ps: Pass) -> np.ndarray:
    """Every chain of two rules at strictly increasing depth, ``(P, 2)``."""
    r = ps.num_rules
    counts = r - ps.first_child
    first = np.repeat(np.arange(r), counts)
    starts = np.repeat(ps.first_child, counts)
    offsets = np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.stack([first, starts + offsets], axis=1).astype(np.int64)


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
    grids: FilterGrids,
    front: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Walk one chunk (again with more room after a full buffer); returns the outputs
    (metrics, index rows, tables) and the raised grids."""
    sp = prep.space
    g = grids.grid.copy()
    cap = _CAPACITY
    while True:
        out_f = np.empty((cap, 3))
        out_i = np.empty((cap, sp.max_exits + 3), dtype=np.int64)
        out_k = np.empty(cap, dtype=np.int64)
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
            grids.edge_x,
            grids.edge_w,
            front[0],
            front[1],
            front[2],
            out_f,
            out_i,
            out_k,
        )
        if n_out >= 0:
            return out_f[:n_out].copy(), out_i[:n_out].copy(), out_k[:n_out].copy(), g
        cap *= 2


def run(
    spaces: Sequence[SearchSpace],
    *,
    backend: str = "numba",
    device: str = "cpu",
    progress: Any = None,
    threads: int | None = None,
    shard: Shard | None = None,
) -> list[ParetoFront]:
    """Evaluate every configuration of the spaces, walked once, and return their exact fronts.

    Args:
        spaces: one space per cost table, equal but for their problems' cost tables (same
            stats, options and priced exits: :func:`mess.search.api.compute_fronts` checks).
        backend: ``"numba"``, ``"numpy"`` or ``"torch"``.
        device: torch device for the ``torch`` backend.
        progress: ``callable(done, total)`` or a rich ``Progress`` (configurations of one
            space: each is evaluated for every table at once).
        threads: worker threads for the numba backend (default: usable cores).
        shard: walk only this shard's part of the space (:func:`portion`).

    Returns:
        One :class:`ParetoFront` per space, in order (p90 and exit counts of its points as
        the naive evaluator computes them); each is the front the space alone gives (of
        the shard's part, for a shard, recorded in ``shard``).
    """
    t0 = time.perf_counter()
    space = spaces[0]
    total = space.size()
    prep = Prepared(spaces) if space.max_exits >= 1 else None
    passes = [ps for _, ps in prep.passes()] if prep is not None else []
    p = space.problem
    n_base = 1 + (len(space.exits) if space.truncation else 0)
    has_base, owned, part = portion(passes, space.max_exits, n_base, shard)
    bar = Progress(progress, part)
    considered = space.exits
    bounds = []
    for sp in spaces:
        p = sp.problem
        costs0 = [p.reach_final + p.head_final] + [p.reach[e] + p.head[e] for e in considered]
        hi = (
            p.reach_final
            + space.max_exits * float(max((p.head + p.policy)[considered], default=0.0))
            + max([p.head_final, *p.head[considered].tolist()])
        )
        bounds.append((min(costs0), hi))
    grids = FilterGrids.empty(bounds)
    collectors = [Collector(space, grid) for grid in grids.tables]

    # k = 0: the original network and, with truncation, each exit alone
    base = [Configuration((), FINAL)]
    if space.truncation:
        base += [Configuration((), p.exit_ids[e]) for e in considered]
    if not has_base:
        base = []
    rows = np.full((len(base), space.max_exits + 2), -1, dtype=np.int64)
    for i, c in enumerate(base):
        rows[i, 0] = 0
        rows[i, -1] = p.exit_index(c.terminal)
    for sp, col in zip(spaces, collectors, strict=True):
        metrics = [sp.problem.evaluate(c) for c in base]
        col.add(
            np.array([m.expected_cost for m in metrics]),
            np.array([m.worst_cost for m in metrics]),
            np.array([m.miou for m in metrics]),
            rows,
        )
    bar.advance(len(base))

    if prep is not None:
        if backend == "numba":
            _run_numba(prep, passes, owned, collectors, grids, bar, threads)
        else:
            run_blas(prep, passes, owned, collectors, bar, backend=backend, device=device)
    seconds = time.perf_counter() - t0
    record = None if shard is None else {**shard.to_json(), "space_size": total}
    return [
        _finish(sp, col, part, seconds, record) for sp, col in zip(spaces, collectors, strict=True)
    ]


def _snapshot(collectors: list[Collector]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every table's known front, concatenated, and where each table's starts."""
    parts = [col.snapshot() for col in collectors]
    start = np.cumsum([0, *(f.shape[1] for f, _ in parts)]).astype(np.int64)
    front = np.ascontiguousarray(np.concatenate([f for f, _ in parts], axis=1))
    franks = np.ascontiguousarray(np.concatenate([r for _, r in parts]))
    return front, franks, start


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


def _run_numba(
    prep: Prepared,
    passes: list[Pass],
    owned: list[np.ndarray],
    collectors: list[Collector],
    grids: FilterGrids,
    bar: Progress,
    threads: int | None,
) -> None:
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
    for ps, mine in zip(passes, owned, strict=True):
        sub = subtree_sizes(ps, sp.max_exits)
        ones = np.flatnonzero(mine).astype(np.int64)[:, None]
        own = ((len(ps.term_exit) - ps.term_first) * ps.n_grid)[mine]
        for a, b in _chunks(own, 1 << 20):
            singles.append((ps, ones[a:b], 1, 0, int(own[a:b].sum())))
        if sp.max_exits >= 2:
            pr = pairs(ps)
            pr = pr[mine[pr[:, 0]]]
            sizes = sub[pr[:, 1], 2]
            states = state_counts(ps, sp.max_exits)[pr[:, 1], 2]
            target = max(1, min(int(sizes.sum()) // (workers * 16) + 1, 1 << 22))
            for a, b in _chunks(sizes, target, states, 512):
                n_states = int(states[a:b].sum())
                longer.append((ps, pr[a:b], sp.max_exits, n_states, int(sizes[a:b].sum())))
    width = sp.max_exits + 2
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mess-search")
    snapshot = _snapshot(collectors)
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
                        grids,
                        snapshot,
                    )
                    pending[fut] = (ps, n_configs)
                done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    ps, n_configs = pending.pop(fut)
                    out_f, out_i, out_k, g = fut.result()
                    ranks = kernel_ranks(ps, out_i, width)
                    changed = False
                    for k, col in enumerate(collectors):
                        mine = out_k == k
                        f = out_f[mine]
                        changed |= col.hold(f[:, 0], f[:, 1], f[:, 2], ranks[mine])
                    if changed:
                        snapshot = _snapshot(collectors)
                    # the grids know every candidate already: the kernel raised them
                    np.maximum(grids.grid, g, out=grids.grid)
                    bar.advance(n_configs)
            # the chains of one exit filter the rest with their whole front
            if any([col.merge() for col in collectors]):  # a list: every collector merges
                snapshot = _snapshot(collectors)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _finish(
    space: SearchSpace,
    col: Collector,
    total: int,
    seconds: float,
    shard: dict[str, Any] | None = None,
) -> ParetoFront:
    p = space.problem
    p90, counts = space.tails(col.ranks)
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
        shard=shard,
    )


__all__ = ["run"]
