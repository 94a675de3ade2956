"""The engine's sums as batched matrix products, in numpy or torch (the GPU path).

Same tree and same canonical arithmetic as the numba kernel (:mod:`mess.search.kernels`),
organised for dense linear algebra instead of per-sample loops: for a batch of chain
states with keys ``m`` (``(B, N)``) and each grid index ``j``, the samples still present are
the rows of the 0/1 matrix ``A_j = [m <= j]``, and

- a child rule ``r`` leaves with ``A_j @ ([bin_r > j] * X_r)``;
- a terminal ``t`` takes ``A_j @ X_t``;
- the last level with only ``final`` after it takes
  ``A_j @ (F + [bin_r > j] * (X_r - F))`` (leaving at ``r`` or reaching ``final``).

The products hold integer sums: they are computed in float32 where every partial sum stays
below 2**24 (exact), else in float64, and rounded back to int64 before the canonical mIoU
and cost arithmetic. For a fleet of cost tables the products and the mIoU are computed
once; the path costs, expected costs and the filter run per table. ``torch`` runs wherever
its device is (CUDA when the search is asked for it); it is an optional dependency of the
torch-free core, so it is imported only here, inside the functions that need it.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from mess.search.collector import Collector, Progress
from mess.search.passes import Pass, Prepared, kernel_ranks

_BATCH_ELEMENTS = 1 << 23  # floats per product result in one batch


def cuda_available() -> bool:
    """Whether torch sees a CUDA device; torch is imported only where an NVIDIA driver is."""
    if not (os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")):
        return False
    try:
        import torch  # lazy: the core runs without torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class _Ops:
    """The handful of array operations the engine needs, for numpy or torch."""

    def __init__(self, backend: str, device: str, exact32: bool) -> None:
        self.torch: Any = None
        self.fdt: Any
        self.i64: Any
        self.f64: Any
        self.small: Any
        if backend == "torch":
            import torch  # lazy: the core runs without torch

            self.torch = torch
            self.device = torch.device(device)
            tf32 = bool(getattr(torch.backends.cuda.matmul, "allow_tf32", False))
            use32 = exact32 and not (self.device.type == "cuda" and tf32)
            self.fdt = torch.float32 if use32 else torch.float64
            self.i64 = torch.int64
            self.f64 = torch.float64
            self.small = torch.int16
        else:
            self.fdt = np.float32 if exact32 else np.float64
            self.i64 = np.int64
            self.f64 = np.float64
            self.small = np.int16

    def put(self, a: np.ndarray, dtype: Any = None) -> Any:
        if self.torch is None:
            return np.asarray(a, dtype=dtype)
        t = self.torch.as_tensor(np.ascontiguousarray(a), device=self.device)
        return t if dtype is None else t.to(dtype)

    def get(self, a: Any) -> np.ndarray:
        return a if self.torch is None else a.detach().cpu().numpy()

    def cast(self, a: Any, dtype: Any) -> Any:
        return a.astype(dtype) if self.torch is None else a.to(dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if self.torch is None:
            return np.zeros(shape, dtype=dtype)
        return self.torch.zeros(shape, dtype=dtype, device=self.device)

    def maximum(self, a: Any, b: Any) -> Any:
        return np.maximum(a, b) if self.torch is None else self.torch.maximum(a, b)

    def where(self, c: Any, a: Any, b: Any) -> Any:
        return np.where(c, a, b) if self.torch is None else self.torch.where(c, a, b)

    def rint(self, a: Any) -> Any:
        if self.torch is None:
            return np.rint(a).astype(np.int64)
        return self.torch.round(a).to(self.torch.int64)

    def searchsorted_right(self, edges: Any, values: Any) -> Any:
        if self.torch is None:
            return np.searchsorted(edges, values, side="right")
        return self.torch.searchsorted(edges, values.contiguous(), right=True)

    def nonzero(self, mask: Any) -> Any:
        if self.torch is None:
            return np.flatnonzero(mask)
        return self.torch.nonzero(mask.reshape(-1)).reshape(-1)


class _States:
    """A batch of chain states at one level (the tree's nodes)."""

    def __init__(
        self, m: Any, tot: Any, cnt: Any, hp: Any, pc: Any, chain: np.ndarray, level: int
    ) -> None:
        self.m = m  # (B, N) keys
        self.tot = tot  # (B, G, W) int64 sums of the samples that left so far
        self.cnt = cnt  # (B, D, G) int64 samples leaving at each level
        self.hp = hp  # (B, K) float64 head + policy along the chain, per cost table
        self.pc = pc  # (B, K, D) float64 cost of leaving at each level, per cost table
        self.chain = chain  # (B, D) int64 rule indices (numpy), column 0 unused
        self.level = level

    def __len__(self) -> int:
        return int(self.chain.shape[0])


class _Runner:
    def __init__(
        self,
        prep: Prepared,
        ps: Pass,
        owned: np.ndarray,
        collectors: list[Collector],
        bar: Progress,
        ops: _Ops,
    ) -> None:
        self.prep, self.ps, self.cols, self.bar, self.ops = prep, ps, collectors, bar, ops
        self.owned = owned  # (R,) bool: the first rules whose subtrees this walk covers
        sp = prep.space
        self.depth = sp.max_exits
        self.g = ps.n_grid
        self.n = sp.problem.num_samples
        self.c = sp.problem.num_classes
        self.w = int(prep.x_all.shape[2])  # count column last
        self.r = ps.num_rules
        o = ops
        x = prep.x_all
        self.bins = o.put(ps.bins, o.small)  # (R, N)
        self.xr = o.put(x[ps.rule_exit], o.fdt)  # (R, N, W)
        self.xf = o.put(x[-1], o.fdt)  # (N, W)
        self.xt = o.put(x[ps.term_exit], o.fdt)  # (Tm, N, W)
        self.target = o.put(sp.problem.target_sum, o.i64)
        self.headpol = (ps.rule_head, ps.rule_policy)
        self.n_term = len(ps.term_exit)
        self.widths = sp.max_exits + 3

    # products ---------------------------------------------------------------------------
    def _present(self, m: Any, j: int) -> Any:
        return self.ops.cast(m <= j, self.ops.fdt)

    def _leave(self, st: _States, lo: int) -> Any:
        """``(B, R - lo, G, W)`` sums of the samples leaving at rules ``lo..`` after each
        state."""
        o = self.ops
        r = self.r - lo
        out = o.zeros((len(st), self.g, r, self.w), o.i64)
        xr, bins = self.xr[lo:], self.bins[lo:]
        for j in range(self.g):
            y = xr * o.cast(bins > j, o.fdt)[:, :, None]  # (R - lo, N, W)
            y = y.transpose(1, 0, 2) if o.torch is None else y.permute(1, 0, 2)
            prod = self._present(st.m, j) @ y.reshape(self.n, r * self.w)
            out[:, j] = o.rint(prod).reshape(len(st), r, self.w)
        return out.transpose(0, 2, 1, 3) if o.torch is None else out.permute(0, 2, 1, 3)

    def _terminal_sums(self, st: _States) -> Any:
        """``(B, Tm, G, W)`` sums of each terminal over the samples still present."""
        o = self.ops
        xt = self.xt.transpose(1, 0, 2) if o.torch is None else self.xt.permute(1, 0, 2)
        xt = xt.reshape(self.n, self.n_term * self.w)
        out = o.zeros((len(st), self.g, self.n_term, self.w), o.i64)
        for j in range(self.g):
            out[:, j] = o.rint(self._present(st.m, j) @ xt).reshape(len(st), self.n_term, self.w)
        return out.transpose(0, 2, 1, 3) if o.torch is None else out.permute(0, 2, 1, 3)

    def _fused(self, st: _States, lo: int) -> Any:
        """``(B, R - lo, G, W)``: leaving at rules ``lo..`` plus reaching ``final`` after."""
        o = self.ops
        r = self.r - lo
        out = o.zeros((len(st), self.g, r, self.w), o.i64)
        xr, bins = self.xr[lo:], self.bins[lo:]
        for j in range(self.g):
            z = self.xf[None] + o.cast(bins > j, o.fdt)[:, :, None] * (xr - self.xf[None])
            z = z.transpose(1, 0, 2) if o.torch is None else z.permute(1, 0, 2)
            prod = self._present(st.m, j) @ z.reshape(self.n, r * self.w)
            out[:, j] = o.rint(prod).reshape(len(st), r, self.w)
        return out.transpose(0, 2, 1, 3) if o.torch is None else out.permute(0, 2, 1, 3)

    # evaluation -------------------------------------------------------------------------
    def _miou(self, sums: Any) -> Any:
        """Canonical mIoU ``(M, G)`` of ``(M, G, W)`` int64 sums of the exits taken."""
        o = self.ops
        c = self.c
        total = o.zeros(tuple(sums.shape[:2]), o.f64)
        kept = o.zeros(tuple(sums.shape[:2]), o.i64)
        for k in range(c):
            inter = sums[:, :, k]
            union = sums[:, :, c + k] + self.target[k] - inter
            ok = union > 0
            ratio = o.cast(inter, o.f64) / o.cast(o.where(ok, union, union * 0 + 1), o.f64)
            total = total + o.where(ok, ratio, ratio * 0.0)
            kept = kept + o.cast(ok, o.i64)
        return o.where(kept > 0, total / o.cast(o.maximum(kept, kept * 0 + 1), o.f64), total * 0.0)

    def _expected(self, cnt: Any, pc: Any, cost_t: Any, level: int) -> Any:
        """Canonical expected cost ``(M, G)`` of one cost table.

        Args:
            cnt: ``(M, D, G)`` int64 samples leaving at levels 1..level.
            pc: ``(M, D)`` float64 leaving costs; ``cost_t``: ``(M,)`` terminal costs.
        """
        o = self.ops
        shape = (int(cnt.shape[0]), int(cnt.shape[2]))
        s = o.zeros(shape, o.f64)
        left = o.zeros(shape, o.i64) + self.n
        exp = s - 1.0
        done = left < 0
        for i in range(1, level + 1):
            ni = cnt[:, i, :]
            left = left - ni
            ci = pc[:, i][:, None] + s * 0.0
            hit = (ni == self.n) & ~done
            exp = o.where(hit, ci, exp)
            done = done | hit
            s = s + o.cast(ni, o.f64) * ci
        ct = cost_t[:, None] + s * 0.0
        tail = o.where(left == self.n, ct, (s + o.cast(left, o.f64) * ct) / self.n)
        return o.where(done, exp, tail)

    def _offer_all(
        self, sums: Any, cnt: Any, pc: Any, cost_t: Any, level: int, rows: np.ndarray
    ) -> None:
        """Evaluate ``M`` chains x ``G`` grid indices for every cost table and offer them;
        ``pc`` is ``(M, K, D)``, ``cost_t`` ``(M, K)``."""
        miou = self._miou(sums)
        for k, col in enumerate(self.cols):
            exp = self._expected(cnt, pc[:, k], cost_t[:, k], level)
            self._offer(col, miou, exp, cost_t[:, k], rows)

    def _offer(self, col: Collector, miou: Any, exp: Any, worst: Any, rows: np.ndarray) -> None:
        """Filter ``(M, G)`` configurations against a table's grid and hand the rest over."""
        o = self.ops
        grid = col.grid
        worst_g = worst[:, None] + exp * 0.0
        ex = o.put(grid.edge_x, o.f64)
        ew = o.put(grid.edge_w, o.f64)
        ix = o.searchsorted_right(ex, exp.reshape(-1)) - 1
        iw = o.searchsorted_right(ew, worst_g.reshape(-1)) - 1
        gv = o.put(grid.grid, o.f64)
        lim = gv[o.maximum(iw, iw * 0), o.maximum(ix, ix * 0)]
        keep = ~((ix >= 0) & (iw >= 0) & (miou.reshape(-1) < lim))
        idx = o.get(o.nonzero(keep))
        if len(idx) == 0:
            return
        g = self.g
        row, j = np.divmod(idx, g)
        out_i = rows[row].copy()
        out_i[:, -1] = j
        ranks = kernel_ranks(self.ps, out_i, self.depth + 2)
        col.add(
            o.get(exp.reshape(-1))[idx],
            o.get(worst_g.reshape(-1))[idx],
            o.get(miou.reshape(-1))[idx],
            ranks,
        )

    # the tree ---------------------------------------------------------------------------
    def _rows(self, chain: np.ndarray, level: int, term: np.ndarray) -> np.ndarray:
        rows = np.full((len(chain), self.widths), -1, dtype=np.int64)
        rows[:, 0] = level
        rows[:, 1 : level + 1] = chain[:, 1 : level + 1]
        rows[:, -2] = term
        return rows

    @staticmethod
    def _pairs(first: np.ndarray, upto: int) -> tuple[np.ndarray, np.ndarray]:
        """Every (state, item) with ``first[state] <= item < upto``."""
        counts = np.maximum(upto - first, 0)
        parent = np.repeat(np.arange(len(first)), counts)
        item = np.repeat(first, counts) + (
            np.arange(len(parent)) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        return parent, item

    def _first_child(self, st: _States) -> np.ndarray:
        last = st.chain[:, st.level]
        return np.where(last >= 0, self.ps.first_child[np.maximum(last, 0)], 0)

    def _kids(self, st: _States) -> tuple[np.ndarray, np.ndarray, int]:
        """Every (state, child rule) pair below ``st`` (at the root: the owned first rules
        only), and the lowest rule a state may take as a child."""
        first = self._first_child(st)
        parent, rule = self._pairs(first, self.r)
        if st.level == 0:
            keep = self.owned[rule]
            parent, rule = parent[keep], rule[keep]
        return parent, rule, int(first.min())

    def emit_terminals(self, st: _States) -> None:
        o = self.ops
        parent, term = self._pairs(self.ps.term_first[st.chain[:, st.level]], self.n_term)
        if len(parent) == 0:
            return
        sums = self._terminal_sums(st)  # (B, Tm, G, W)
        p_d, t_d = o.put(parent, o.i64), o.put(term, o.i64)
        tot = st.tot[p_d] + sums[p_d, t_d]
        cost_t = self.ps.term_reach[:, term].T + (
            o.get(st.hp)[parent] + self.ps.term_head[:, term].T
        )
        cost_t_d = o.put(cost_t, o.f64)
        rows = self._rows(st.chain[parent], st.level, term)
        self._offer_all(tot, st.cnt[p_d], st.pc[p_d], cost_t_d, st.level, rows)
        self.bar.advance(len(parent) * self.g)

    def _extend(
        self, st: _States, sums: Any, parent: np.ndarray, rule: np.ndarray, lo: int
    ) -> tuple[Any, Any, Any, np.ndarray, np.ndarray]:
        """Sums, counts, costs and chains of the children ``(parent, rule)``; ``sums``
        holds rules ``lo..``."""
        o = self.ops
        lvl = st.level + 1
        p_d, r_d = o.put(parent, o.i64), o.put(rule - lo, o.i64)
        part = sums[p_d, r_d]  # (M, G, W)
        cnt = st.cnt[p_d]
        cnt[:, lvl] = part[:, :, self.w - 1]
        head, pol = self.headpol
        hp = (o.get(st.hp)[parent] + head[:, rule].T) + pol[:, rule].T  # (M, K)
        pc = st.pc[p_d]
        pc[:, :, lvl] = o.put(self.ps.rule_reach[:, rule].T + hp, o.f64)
        chain = st.chain[parent].copy()
        chain[:, lvl] = rule
        return part, cnt, pc, hp, chain

    def children(self, st: _States) -> _States | None:
        """All children of a batch of states (rules strictly deeper)."""
        o = self.ops
        parent, rule, lo = self._kids(st)
        if len(parent) == 0:
            return None
        leave, cnt, pc, hp, chain = self._extend(st, self._leave(st, lo), parent, rule, lo)
        p_d, r_d = o.put(parent, o.i64), o.put(rule, o.i64)
        m = o.maximum(st.m[p_d], self.bins[r_d])
        tot = st.tot[p_d] + leave
        return _States(m, tot, cnt, o.put(hp, o.f64), pc, chain, st.level + 1)

    def fused_leaves(self, st: _States) -> None:
        o = self.ops
        parent, rule, lo = self._kids(st)
        if len(parent) == 0:
            return
        comb, cnt, pc, hp, chain = self._extend(st, self._fused(st, lo), parent, rule, lo)
        tot = st.tot[o.put(parent, o.i64)] + comb
        cost_t_d = o.put(self.ps.term_reach[:, -1] + (hp + self.ps.term_head[:, -1]), o.f64)
        lvl = st.level + 1
        term = np.full(len(parent), self.n_term - 1)
        self._offer_all(tot, cnt, pc, cost_t_d, lvl, self._rows(chain, lvl, term))
        self.bar.advance(len(parent) * self.g)

    def expand(self, st: _States) -> None:
        if st.level >= 1:
            self.emit_terminals(st)
        if st.level >= self.depth:
            return
        fused = st.level + 1 == self.depth and self.n_term == 1
        per_parent = max(1, _BATCH_ELEMENTS // max(1, self.r * self.g * self.w))
        for a in range(0, len(st), per_parent):
            part = _slice(st, a, a + per_parent, self.ops)
            if fused:
                self.fused_leaves(part)
                continue
            kids = self.children(part)
            if kids is None:
                continue
            for b in range(0, len(kids), per_parent):
                self.expand(_slice(kids, b, b + per_parent, self.ops))

    def root(self) -> _States:
        o = self.ops
        d = self.depth + 1
        return _States(
            m=o.zeros((1, self.n), o.small),
            tot=o.zeros((1, self.g, self.w), o.i64),
            cnt=o.zeros((1, d, self.g), o.i64),
            hp=o.zeros((1, len(self.cols)), o.f64),
            pc=o.zeros((1, len(self.cols), d), o.f64),
            chain=np.full((1, d), -1, dtype=np.int64),
            level=0,
        )


def _slice(st: _States, a: int, b: int, o: _Ops) -> _States:
    return _States(
        st.m[a:b], st.tot[a:b], st.cnt[a:b], st.hp[a:b], st.pc[a:b], st.chain[a:b], st.level
    )


def run_blas(
    prep: Prepared,
    passes: list[Pass],
    owned: list[np.ndarray],
    collectors: list[Collector],
    bar: Progress,
    *,
    backend: str,
    device: str,
) -> None:
    """Walk the passes of ``prep``'s space with batched products (numpy or torch).

    Args:
        prep: the prepared arrays.
        passes: its passes (``prep.passes()``).
        owned: per pass, the first rules whose subtrees to walk (all for a whole search).
        collectors: one per cost table, receive its candidates (exact front merge).
        bar: progress.
        backend: ``"numpy"`` or ``"torch"``.
        device: the torch device (``"cpu"`` or ``"cuda"``).
    """
    total = int(prep.space.problem.stats.target.sum(dtype=np.int64))
    ops = _Ops(backend, device, exact32=total < 2**24)
    for ps, mine in zip(passes, owned, strict=True):
        if ps.num_rules == 0 or not mine.any():
            continue
        runner = _Runner(prep, ps, mine, collectors, bar, ops)
        runner.expand(runner.root())
