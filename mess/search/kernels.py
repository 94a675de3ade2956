"""The exhaustive search's compiled CPU kernel (numba), and its pure-Python twin.

One call walks the configuration tree below a list of chain prefixes, depth first. A node at
level ``l`` is a chain of ``l`` rules (early exits with their thresholds); every sample has a
key ``m[n]`` = the largest image-threshold bin among the chain's exits (bins: a sample passes
exit ``e`` at grid index ``j`` iff ``bin[e, n] > j``), so that for every grid index ``j`` at
once the samples still present after the chain are those with ``m[n] <= j``. Sums over
samples for all ``j`` come from difference arrays over ``j`` and one cumulative sum:

- a child rule ``r`` adds the samples with ``m[n] <= j < bin[r, n]`` (leaving at ``r``):
  ``+X[r, n]`` at ``m[n]``, ``-X[r, n]`` at ``bin[r, n]``;
- a terminal ``t`` adds the samples with ``m[n] <= j``: ``+X[t, n]`` at ``m[n]``;
- at the last level with only the ``final`` terminal both are fused: one pass over the
  samples with one or two vector additions each.

``X`` rows hold ``[intersection (C), predicted (C), 1]`` per sample (the final exit's count
column is 0, so the fused column counts the samples leaving at ``r``). Each configuration's
mIoU, expected and worst cost use the canonical arithmetic of :mod:`mess.search.problem`.

A configuration is offered to a conservative Pareto filter: a grid over (expected cost,
worst cost) holding the best mIoU of configurations known to be at most that expensive in
both; a configuration strictly below it is dominated and dropped, any other is written out
(and raises the grid). The caller merges what is written into the exact front.

Fleet search: the cost arrays have one row per cost table (``K`` of them) and so have the
filter grids and the known fronts. The sample sums and each configuration's mIoU, which do
not depend on the costs, are computed once per node; only the path costs, the expected cost
and the filter run once per table, and every output row names its table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:  # numba is an optional accelerator (extra "fast"); the same code runs uncompiled
    import numba

    HAVE_NUMBA = True

    def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
        return numba.njit(cache=True, nogil=True)(fn)

except ImportError:  # pragma: no cover - exercised where numba is missing
    HAVE_NUMBA = False

    def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn


@_jit
def _floor_edge(edges: np.ndarray, value: float) -> int:
    """Largest ``i`` with ``edges[i] <= value``, or -1."""
    n = edges.shape[0]
    lo = edges[0]
    hi = edges[n - 1]
    if value < lo:
        return -1
    i = n - 1
    if hi > lo:
        f = (value - lo) / (hi - lo) * (n - 1)
        i = int(f) if f < n - 1 else n - 1
    while i > 0 and edges[i] > value:
        i -= 1
    while i + 1 < n and edges[i + 1] <= value:
        i += 1
    return i


@_jit
def _offer(
    exp: float,
    worst: float,
    iw: int,
    miou: float,
    grid: np.ndarray,
    edge_x: np.ndarray,
    edge_w: np.ndarray,
    front: np.ndarray,
    franks: np.ndarray,
    rule_code: np.ndarray,
    term_code: int,
    out_f: np.ndarray,
    out_i: np.ndarray,
    out_k: np.ndarray,
    table: int,
    n_out: int,
    level: int,
    chain: np.ndarray,
    term: int,
    j: int,
) -> int:
    """Filter one configuration of cost table ``table`` (``grid``, ``edge_x``, ``edge_w``,
    ``front`` and ``franks`` are that table's); returns the new output count, -1 when the
    buffer is full.

    ``iw`` is ``_floor_edge(edge_w, worst)``. ``front`` is ``(3, F)`` (expected, worst,
    mIoU) of known configurations sorted by expected cost and ``franks`` their rank rows:
    a configuration they dominate under the front's rule (ties in expected cost and mIoU
    go to the smaller rank) is dropped.
    """
    ix = _floor_edge(edge_x, exp)
    if ix >= 0 and iw >= 0 and miou < grid[iw, ix]:
        return n_out
    for q in range(front.shape[1]):
        if front[0, q] > exp:
            break
        if front[2, q] >= miou and front[1, q] <= worst:
            if front[0, q] < exp or front[2, q] > miou:
                return n_out
            if _rank_before(franks[q], level, chain, rule_code, j, term_code):
                return n_out
    if n_out >= out_f.shape[0]:
        return -1
    out_f[n_out, 0] = exp
    out_f[n_out, 1] = worst
    out_f[n_out, 2] = miou
    width = out_i.shape[1]
    out_i[n_out, 0] = level
    for q in range(1, width - 2):
        out_i[n_out, q] = chain[q] if q <= level else -1
    out_i[n_out, width - 2] = term
    out_i[n_out, width - 1] = j
    out_k[n_out] = table
    # raise the grid where this configuration is at most as expensive (monotone: stop early)
    gx = edge_x.shape[0]
    gw = edge_w.shape[0]
    ax = ix if ix >= 0 and edge_x[ix] == exp else ix + 1
    aw = iw if iw >= 0 and edge_w[iw] == worst else iw + 1
    if ax >= gx:
        return n_out + 1
    for b in range(aw, gw):
        if grid[b, ax] >= miou:
            break
        for a in range(ax, gx):
            if grid[b, a] >= miou:
                break
            grid[b, a] = miou
    return n_out + 1


@_jit
def _rank_before(
    row: np.ndarray, level: int, chain: np.ndarray, rule_code: np.ndarray, j: int, term: int
) -> bool:
    """Whether rank ``row`` comes before the candidate's ``[level, v_1..v_level, .., term]``."""
    width = row.shape[0]
    if row[0] != level:
        return row[0] < level
    for q in range(1, width - 1):
        v = rule_code[chain[q]] + j if q <= level else -1
        if row[q] != v:
            return row[q] < v
    return row[width - 1] < term


@_jit
def _emit(
    level: int,
    tot: np.ndarray,
    comb: np.ndarray,
    cnt: np.ndarray,
    pc: np.ndarray,
    cost_t: np.ndarray,
    n_samples: int,
    n_classes: int,
    target_sum: np.ndarray,
    grid: np.ndarray,
    edge_x: np.ndarray,
    edge_w: np.ndarray,
    front: np.ndarray,
    franks: np.ndarray,
    front_start: np.ndarray,
    rule_code: np.ndarray,
    term_code: int,
    scratch: np.ndarray,
    whole: np.ndarray,
    out_f: np.ndarray,
    out_i: np.ndarray,
    out_k: np.ndarray,
    n_out: int,
    chain: np.ndarray,
    term: int,
) -> int:
    """Evaluate the configurations (chain, terminal, every grid index) of one node, for
    every cost table.

    ``tot`` and ``comb`` are ``(W, G)``: the mIoU loop runs over the grid index innermost
    (vectorised), adding the classes in class order for each ``j`` as the canonical sum does;
    it runs once, whatever the number of tables. ``pc`` is ``(K, D)`` and ``cost_t`` ``(K,)``:
    the expected cost and the filter run per table. Consecutive grid indices with equal
    metrics are the same point with a larger rank: only the first is offered. ``scratch``
    is ``(5 + D, G)`` float64 and ``whole`` ``(G,)`` int64 room.
    """
    g = tot.shape[1]
    c = n_classes
    total = scratch[0]
    kept = scratch[1]
    exps = scratch[2]
    left_f = scratch[3]
    sums = scratch[4]
    cnt_f = scratch[5:]
    for j in range(g):
        total[j] = 0.0
        kept[j] = 0.0
    for k in range(c):
        tk = target_sum[k]
        for j in range(g):
            inter = np.int64(tot[k, j]) + np.int64(comb[k, j])
            union = np.int64(tot[c + k, j]) + np.int64(comb[c + k, j]) + tk - inter
            ok = union > 0
            ratio = float(inter) / (float(union) if ok else 1.0)
            total[j] += ratio if ok else 0.0
            kept[j] += 1.0 if ok else 0.0
    for j in range(g):
        total[j] = total[j] / kept[j] if kept[j] > 0 else 0.0
    # what the expected cost needs besides the costs: per grid index, the samples leaving
    # at each level (as floats), those reaching the terminal, and the level taking them all
    # (0: none, level + 1: the terminal), where the canonical sum is replaced by that cost
    for j in range(g):
        left = n_samples
        whole[j] = 0
        for i in range(1, level + 1):
            ni = cnt[i, j]
            cnt_f[i, j] = float(ni)
            left -= ni
            if ni == n_samples and whole[j] == 0:
                whole[j] = i
        left_f[j] = float(left)
        if left == n_samples:
            whole[j] = level + 1
    for tb in range(pc.shape[0]):
        ct = cost_t[tb]
        # the canonical sum ((n_1 c_1 + n_2 c_2) + ...) + n_T c_T over every grid index at
        # once; where one exit takes all, the break of the canonical loop gives its cost
        for j in range(g):
            sums[j] = 0.0
        for i in range(1, level + 1):
            ci = pc[tb, i]
            for j in range(g):
                sums[j] = sums[j] + cnt_f[i, j] * ci
        for j in range(g):
            exps[j] = (sums[j] + left_f[j] * ct) / n_samples
        for j in range(g):
            at = whole[j]
            if at > 0:
                exps[j] = ct if at > level else pc[tb, at]
        grid_t = grid[tb]
        ex = edge_x[tb]
        ew = edge_w[tb]
        iw = _floor_edge(ew, ct)
        lo = ex[0]
        nx = ex.shape[0]
        scale = (nx - 1) / (ex[nx - 1] - lo) if nx > 1 else 0.0
        row = grid_t[iw] if iw >= 0 else grid_t[0]
        for j in range(g):
            exp = exps[j]
            miou = total[j]
            if j > 0 and exp == exps[j - 1] and miou == total[j - 1]:
                continue
            if iw >= 0 and exp >= lo:
                # quick reject on the grid row of this worst cost (the usual case)
                f = (exp - lo) * scale
                ix = int(f) if f < nx - 1 else nx - 1
                while ix > 0 and ex[ix] > exp:
                    ix -= 1
                if miou < row[ix]:
                    continue
            a = front_start[tb]
            b = front_start[tb + 1]
            n_out = _offer(
                exp,
                ct,
                iw,
                miou,
                grid_t,
                ex,
                ew,
                front[:, a:b],
                franks[a:b],
                rule_code,
                term_code,
                out_f,
                out_i,
                out_k,
                tb,
                n_out,
                level,
                chain,
                term,
                j,
            )
            if n_out < 0:
                return -1
    return n_out


@_jit
def _step_costs(
    lv: int,
    r: int,
    hp: np.ndarray,
    pc: np.ndarray,
    rule_reach: np.ndarray,
    rule_head: np.ndarray,
    rule_policy: np.ndarray,
) -> None:
    """Per table, ``hp`` and the cost of leaving at level ``lv`` (rule ``r``), canonically."""
    for tb in range(hp.shape[0]):
        hp[tb, lv] = (hp[tb, lv - 1] + rule_head[tb, r]) + rule_policy[tb, r]
        pc[tb, lv] = rule_reach[tb, r] + hp[tb, lv]


@_jit
def _cumulate(acc: np.ndarray, base: np.ndarray, out: np.ndarray) -> None:
    """``out[q, j] = base[q, j] + sum(acc[:j + 1, q])``; ``acc`` becomes its prefix sums.

    The prefix runs along rows (vectorised over columns); ``out`` is written transposed.
    """
    g = out.shape[1]
    w = out.shape[0]
    for j in range(1, g):
        for q in range(w):
            acc[j, q] += acc[j - 1, q]
    for q in range(w):
        for j in range(g):
            out[q, j] = base[q, j] + acc[j, q]


@_jit
def _child(
    level: int,
    r: int,
    m: np.ndarray,
    bins: np.ndarray,
    xr: np.ndarray,
    acc: np.ndarray,
    tot: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """State of the chain extended by rule ``r`` (its bins and X rows ``xr``) at ``level``."""
    w = xr.shape[1]
    acc[:, :] = 0
    for n in range(m.shape[1]):
        a = m[level - 1, n]
        b = bins[r, n]
        if a < b:
            for q in range(w):
                acc[a, q] += xr[n, q]
                acc[b, q] -= xr[n, q]
            m[level, n] = b
        else:
            m[level, n] = a
    _cumulate(acc, tot[level - 1], tot[level])
    last = w - 1
    for j in range(tot.shape[2]):
        cnt[level, j] = tot[level, last, j] - tot[level - 1, last, j]


@_jit
def _terminal(
    level: int,
    m: np.ndarray,
    xt: np.ndarray,
    acc: np.ndarray,
    zero: np.ndarray,
    comb: np.ndarray,
) -> None:
    """Sums of terminal rows ``xt`` over the samples still present after the chain."""
    g = comb.shape[1]
    w = xt.shape[1]
    acc[:, :] = 0
    for n in range(m.shape[1]):
        a = m[level, n]
        if a < g:
            for q in range(w):
                acc[a, q] += xt[n, q]
    _cumulate(acc, zero, comb)


@_jit
def _final_histogram(keys: np.ndarray, xf: np.ndarray, hist: np.ndarray) -> None:
    """``hist[a] = sum of xf[n] over the samples with key a`` (key ``G``: left already)."""
    w = xf.shape[1]
    hist[:, :] = 0
    for n in range(keys.shape[0]):
        a = keys[n]
        for q in range(w):
            hist[a, q] += xf[n, q]


@_jit
def _fused_leaf(
    level: int,
    r: int,
    keys: np.ndarray,
    bins: np.ndarray,
    dxr: np.ndarray,
    hist: np.ndarray,
    acc: np.ndarray,
    zero: np.ndarray,
    comb: np.ndarray,
    cnt: np.ndarray,
    moving: np.ndarray,
) -> None:
    """Leave sums at rule ``r`` plus the final exit's sums after it.

    Every present sample (key ``a < G``) reaches ``final`` at ``a`` unless it leaves at
    ``r`` for ``a <= j < bin``: starting from the node's final-exit histogram, only those
    samples move, ``-dx`` at ``a`` and ``+dx`` at ``bin`` (``dx = final - X_r``).
    """
    g = comb.shape[1]
    w = dxr.shape[1]
    acc[:, :] = hist
    # branch-free: list the moving samples, then move them (row G takes bin == G, unread)
    k = 0
    for n in range(keys.shape[0]):
        moving[k] = n
        k += 1 if keys[n] < bins[r, n] else 0
    for i in range(k):
        n = moving[i]
        a = keys[n]
        b = bins[r, n]
        for q in range(w):
            acc[a, q] -= dxr[n, q]
        for q in range(w):
            acc[b, q] += dxr[n, q]
    _cumulate(acc, zero, comb)
    count = comb.shape[0] - 1
    for j in range(g):
        cnt[level, j] = comb[count, j]


@_jit
def walk(
    prefixes: np.ndarray,
    max_depth: int,
    n_states: int,
    n_grid: int,
    n_classes: int,
    bins: np.ndarray,
    rule_exit: np.ndarray,
    rule_code: np.ndarray,
    rule_reach: np.ndarray,
    rule_head: np.ndarray,
    rule_policy: np.ndarray,
    first_child: np.ndarray,
    x_all: np.ndarray,
    dx_all: np.ndarray,
    term_exit: np.ndarray,
    term_reach: np.ndarray,
    term_head: np.ndarray,
    term_first: np.ndarray,
    target_sum: np.ndarray,
    grid: np.ndarray,
    edge_x: np.ndarray,
    edge_w: np.ndarray,
    front: np.ndarray,
    franks: np.ndarray,
    front_start: np.ndarray,
    out_f: np.ndarray,
    out_i: np.ndarray,
    out_k: np.ndarray,
) -> int:
    """Walk the subtrees of ``prefixes`` (their own configurations included), for ``K``
    cost tables at once.

    Nodes one level above the leaves are stored (``n_states`` of them at most); their leaf
    children with only ``final`` after them are then evaluated rule by rule, each rule's
    rows staying in cache while every stored node uses them.

    Args:
        prefixes: ``(P, L0)`` rule indices (rules sorted by depth) of chain prefixes.
        max_depth: deepest chain length.
        n_states: room for stored nodes (level ``max_depth - 1`` below the prefixes).
        n_grid: ``G``, the image-threshold grid size of the rules' bins.
        n_classes: ``C``.
        bins: ``(R, N)`` bins per rule.
        rule_exit: ``(R,)`` stats exit index of each rule (row of ``x_all``).
        rule_code: ``(R,)`` rank code of each rule at grid index 0.
        rule_reach, rule_head, rule_policy: ``(K, R)`` costs per table and rule.
        first_child: ``(R,)`` first rule strictly deeper than each rule (R if none).
        x_all: ``(E+1, N, W)`` rows per exit, final last with count column 0.
        dx_all: ``(E, N, W)`` ``x_all[final] - x_all[e]``.
        term_exit: ``(Tm,)`` terminals sorted by depth, final last.
        term_reach, term_head: ``(K, Tm)`` their costs per table.
        term_first: ``(R,)`` first terminal strictly deeper than each rule.
        target_sum: ``(C,)`` int64 target sums.
        grid, edge_x, edge_w: the Pareto filter grids ``(K, nw, nx)``, ``(K, nx)``,
            ``(K, nw)`` (raised in place).
        front, franks, front_start: known points of every table, ``(3, F)`` (expected,
            worst, mIoU) and ``(F, max_exits + 2)`` rank rows; table ``k``'s are columns
            (rows) ``front_start[k]:front_start[k + 1]``, sorted by expected cost.
        out_f: ``(cap, 3)`` float64 written (expected, worst, mIoU).
        out_i: ``(cap, max_exits + 3)`` int64 written ``[k, r_1..r_max_exits, terminal, j]``.
        out_k: ``(cap,)`` int64 written: the cost table of each output.

    Returns:
        The number of outputs written, or -1 when ``out_f`` filled up (walk again with
        more room).
    """
    n_prefix, l0 = prefixes.shape
    n_samples = bins.shape[1]
    n_tables = rule_reach.shape[0]
    w = x_all.shape[2]
    n_rules = bins.shape[0]
    n_term = term_exit.shape[0]
    final = x_all.shape[0] - 1
    d = max_depth + 1
    m = np.zeros((d, n_samples), dtype=bins.dtype)
    tot = np.zeros((d, w, n_grid), dtype=x_all.dtype)
    zero = np.zeros((w, n_grid), dtype=x_all.dtype)
    scratch = np.zeros((5 + d, n_grid))
    whole = np.zeros(n_grid, dtype=np.int64)
    cnt = np.zeros((d, n_grid), dtype=np.int64)
    hp = np.zeros((n_tables, d))
    pc = np.zeros((n_tables, d))
    cost_t = np.zeros(n_tables)
    chain = np.zeros(d, dtype=np.int64)
    cursor = np.zeros(d + 1, dtype=np.int64)
    acc = np.zeros((n_grid + 1, w), dtype=x_all.dtype)
    comb = np.zeros((w, n_grid), dtype=x_all.dtype)
    moving = np.zeros(n_samples, dtype=np.int64)
    # stored nodes at level max_depth - 1
    s_m = np.zeros((n_states, n_samples), dtype=bins.dtype)
    s_tot = np.zeros((n_states, w, n_grid), dtype=x_all.dtype)
    s_cnt = np.zeros((n_states, d, n_grid), dtype=np.int64)
    s_hp = np.zeros((n_states, n_tables))
    s_pc = np.zeros((n_states, n_tables, d))
    s_chain = np.zeros((n_states, d), dtype=np.int64)
    s_hist = np.zeros((n_states, n_grid + 1, w), dtype=x_all.dtype)
    n_st = 0
    defer = max_depth >= 2
    n_out = 0
    for p in range(n_prefix):
        level = 0
        for lv in range(1, l0 + 1):
            r = prefixes[p, lv - 1]
            chain[lv] = r
            _step_costs(lv, r, hp, pc, rule_reach, rule_head, rule_policy)
            _child(lv, r, m, bins, x_all[rule_exit[r]], acc, tot, cnt)
        # depth-first over the nodes below the prefix; level l0 is the prefix itself
        level = l0
        cursor[level] = -1
        while level >= l0:
            if cursor[level] >= 0:  # next child of this node
                if cursor[level] >= n_rules:
                    level -= 1
                    continue
                r = cursor[level]
                cursor[level] += 1
                lv = level + 1
                if defer and lv == max_depth and term_first[r] == n_term - 1:
                    continue  # a fused leaf, evaluated below from the stored node
                chain[lv] = r
                _step_costs(lv, r, hp, pc, rule_reach, rule_head, rule_policy)
                _child(lv, r, m, bins, x_all[rule_exit[r]], acc, tot, cnt)
                level = lv
                cursor[level] = -1
            # a new node: its own configurations, then its children
            last = chain[level]
            for t in range(term_first[last], n_term):
                _terminal(level, m, x_all[term_exit[t]], acc, zero, comb)
                for tb in range(n_tables):
                    cost_t[tb] = term_reach[tb, t] + (hp[tb, level] + term_head[tb, t])
                n_out = _emit(
                    level,
                    tot[level],
                    comb,
                    cnt,
                    pc,
                    cost_t,
                    n_samples,
                    n_classes,
                    target_sum,
                    grid,
                    edge_x,
                    edge_w,
                    front,
                    franks,
                    front_start,
                    rule_code,
                    term_exit[t],
                    scratch,
                    whole,
                    out_f,
                    out_i,
                    out_k,
                    n_out,
                    chain,
                    t,
                )
                if n_out < 0:
                    return -1
            if level < max_depth:
                if defer and level == max_depth - 1:
                    s_m[n_st] = m[level]
                    s_tot[n_st] = tot[level]
                    s_cnt[n_st] = cnt
                    for tb in range(n_tables):
                        s_hp[n_st, tb] = hp[tb, level]
                    s_pc[n_st] = pc
                    s_chain[n_st] = chain
                    _final_histogram(m[level], x_all[final], s_hist[n_st])
                    n_st += 1
                cursor[level] = first_child[last]
            else:
                level -= 1
    if not defer:
        return n_out
    # fused leaves, rule by rule
    lv = max_depth
    for r in range(n_rules):
        if term_first[r] != n_term - 1:
            continue
        dxr = dx_all[rule_exit[r]]
        for q in range(n_st):
            if first_child[s_chain[q, lv - 1]] > r:
                continue
            for i in range(d):
                chain[i] = s_chain[q, i]
                for j in range(n_grid):
                    cnt[i, j] = s_cnt[q, i, j]
            chain[lv] = r
            for tb in range(n_tables):
                for i in range(d):
                    pc[tb, i] = s_pc[q, tb, i]
                hp_r = (s_hp[q, tb] + rule_head[tb, r]) + rule_policy[tb, r]
                pc[tb, lv] = rule_reach[tb, r] + hp_r
                cost_t[tb] = term_reach[tb, n_term - 1] + (hp_r + term_head[tb, n_term - 1])
            _fused_leaf(lv, r, s_m[q], bins, dxr, s_hist[q], acc, zero, comb, cnt, moving)
            n_out = _emit(
                lv,
                s_tot[q],
                comb,
                cnt,
                pc,
                cost_t,
                n_samples,
                n_classes,
                target_sum,
                grid,
                edge_x,
                edge_w,
                front,
                franks,
                front_start,
                rule_code,
                term_exit[n_term - 1],
                scratch,
                whole,
                out_f,
                out_i,
                out_k,
                n_out,
                chain,
                n_term - 1,
            )
            if n_out < 0:
                return -1
    return n_out


@_jit
def pareto_sweep(
    exp: np.ndarray, worst: np.ndarray, miou: np.ndarray, order: np.ndarray
) -> np.ndarray:
    """Exact front of points sorted by (expected asc, mIoU desc, worst asc, order asc).

    ``q`` dominates ``p`` iff ``exp_q <= exp_p``, ``worst_q <= worst_p``, ``miou_q >= miou_p``
    and either ``(exp, miou)`` differ or ``order_q < order_p`` (``order``: the rank's
    position in the tie order). Returns a boolean mask of the points kept.
    """
    n = exp.shape[0]
    keep = np.zeros(n, dtype=np.bool_)
    kept = np.zeros(n, dtype=np.int64)
    nk = 0
    for p in range(n):
        dominated = False
        for s in range(nk):
            q = kept[s]
            weakly = worst[q] <= worst[p] and miou[q] >= miou[p]
            if weakly and (exp[q] != exp[p] or miou[q] != miou[p] or order[q] < order[p]):
                dominated = True
                break
        if not dominated:
            keep[p] = True
            kept[nk] = p
            nk += 1
    return keep
