"""Pareto fronts: computed once per (stats, costs), answering queries in milliseconds.

The stored front is exact for every query :func:`mess.search.search` answers, worst-cost
budgets included: it keeps each configuration that no other beats in (expected cost, worst
cost, mIoU), where a configuration with the same expected cost and mIoU beats another only
if it also has a smaller rank (the tie order: fewer exits, then the canonical order of
:mod:`mess.search.problem`). The optimum of any ``max-accuracy`` or ``min-cost`` query, with or
without a worst-cost budget, is always among these points, and so is the plain two-
dimensional front of the ``pareto`` objective (:meth:`ParetoFront.front_2d`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mess.fileio import atomic_write
from mess.search.configuration import Configuration, ExitRule
from mess.search.kernels import pareto_sweep
from mess.space import FINAL

Objective = Literal["max-accuracy", "min-cost", "pareto"]
FRONT_FORMAT = "mess-front"


@dataclass
class FrontPoint:
    """One configuration and its metrics."""

    configuration: Configuration
    miou: float
    expected_cost: float
    worst_cost: float
    p90_cost: float
    exit_fractions: list[float]
    rank: tuple[int, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "configuration": self.configuration.to_json(),
            "miou": self.miou,
            "expected_cost": self.expected_cost,
            "worst_cost": self.worst_cost,
            "p90_cost": self.p90_cost,
            "exit_fractions": list(self.exit_fractions),
        }


class NoFeasibleConfiguration(Exception):
    """No configuration meets the constraints.

    Attributes:
        alternatives: the nearest feasible configurations (the cheapest one for
            ``max-accuracy``, the most accurate one for ``min-cost``, and under a worst-cost
            budget the best one within it).
        reason: the message without the alternatives.
        front: the front that was asked, when a front was.
    """

    def __init__(
        self, message: str, alternatives: list[FrontPoint], front: ParetoFront | None = None
    ) -> None:
        names = "; ".join(
            f"{a.configuration} (mIoU {a.miou:.4f}, expected {a.expected_cost:.4g}, "
            f"worst {a.worst_cost:.4g})"
            for a in alternatives
        )
        super().__init__(f"{message}. Closest feasible: {names}" if names else message)
        self.alternatives = alternatives
        self.reason = message
        self.front = front


def rank_order(ranks: np.ndarray) -> np.ndarray:
    """Position of each rank row in the lexicographic tie order (0 = preferred)."""
    if len(ranks) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort(ranks.T[::-1])
    pos = np.empty(len(ranks), dtype=np.int64)
    pos[order] = np.arange(len(ranks))
    return pos


def exact_front(
    exp: np.ndarray, worst: np.ndarray, miou: np.ndarray, ranks: np.ndarray
) -> np.ndarray:
    """Indices of the points kept in the front (module docstring), in sweep order.

    Args:
        exp, worst, miou: ``(P,)`` float64 metrics.
        ranks: ``(P, width)`` int64 rank rows (padded with -1).
    """
    if len(exp) == 0:
        return np.zeros(0, dtype=np.int64)
    order = rank_order(ranks)
    idx = np.lexsort((order, worst, -miou, exp))
    keep = pareto_sweep(exp[idx], worst[idx], miou[idx], order[idx])
    return idx[keep]


@dataclass
class FilterGrid:
    """Conservative dominance test: ``grid[k, i]`` is the best mIoU among known
    configurations with worst cost <= ``edge_w[k]`` and expected cost <= ``edge_x[i]``."""

    edge_x: np.ndarray
    edge_w: np.ndarray
    grid: np.ndarray

    def raise_to(self, exp: np.ndarray, worst: np.ndarray, miou: np.ndarray) -> None:
        """Account for configurations with these metrics."""
        if len(exp) == 0:
            return
        ix = np.searchsorted(self.edge_x, exp, side="left")
        iw = np.searchsorted(self.edge_w, worst, side="left")
        ok = (ix < len(self.edge_x)) & (iw < len(self.edge_w))
        base = np.full_like(self.grid, -np.inf)
        np.maximum.at(base, (iw[ok], ix[ok]), miou[ok])
        base = np.maximum.accumulate(np.maximum.accumulate(base, axis=0), axis=1)
        np.maximum(self.grid, base, out=self.grid)

    def dominated(self, exp: np.ndarray, worst: np.ndarray, miou: np.ndarray) -> np.ndarray:
        """True where a known configuration is surely better (never a false positive)."""
        ix = np.searchsorted(self.edge_x, exp, side="right") - 1
        iw = np.searchsorted(self.edge_w, worst, side="right") - 1
        ok = (ix >= 0) & (iw >= 0)
        out = np.zeros(len(exp), dtype=bool)
        out[ok] = miou[ok] < self.grid[iw[ok], ix[ok]]
        return out


@dataclass
class FilterGrids:
    """One :class:`FilterGrid` per cost table of a fleet, stacked: ``edge_x`` ``(K, nx)``,
    ``edge_w`` ``(K, nw)``, ``grid`` ``(K, nw, nx)`` (what the kernel reads); ``tables[k]``
    views table ``k``'s rows, so that raising it raises the stack."""

    edge_x: np.ndarray
    edge_w: np.ndarray
    grid: np.ndarray
    tables: list[FilterGrid]

    @classmethod
    def empty(cls, bounds: list[tuple[float, float]], nx: int = 1024, nw: int = 128) -> FilterGrids:
        """Empty grids spanning ``(lo, hi)`` per table, ``nx x nw`` cells for one table and
        about as many in all for several: each worker copies the stack and reads it at
        random, so it must stay in cache (ten full grids ran the fleet twice as long)."""
        shrink = np.sqrt(len(bounds))
        nx, nw = max(64, int(nx / shrink)), max(16, int(nw / shrink))
        if not all(hi > lo for lo, hi in bounds):
            nx = nw = 1
        edge_x = np.stack([np.linspace(lo, hi, nx) for lo, hi in bounds])
        edge_w = np.stack([np.linspace(lo, hi, nw) for lo, hi in bounds])
        grid = np.full((len(bounds), nw, nx), -np.inf)
        tables = [FilterGrid(edge_x[k], edge_w[k], grid[k]) for k in range(len(bounds))]
        return cls(edge_x, edge_w, grid, tables)


@dataclass
class ParetoFront:
    """The exact front of one search space over one (stats, costs) pair.

    Attributes:
        exp, worst, miou, p90: ``(P,)`` float64 metrics of the points.
        ranks: ``(P, max_exits + 2)`` int64 rank rows ``[k, v_1..v_k, -1.., terminal]``.
        counts: ``(P, max_exits + 1)`` int64 samples per exit taken (-1 padded).
        space: what decodes ranks: ``exit_ids``, ``pixel_thresholds``,
            ``image_thresholds``, ``num_samples`` and the search options.
        reference_miou: mIoU of the original network (``final`` alone).
        configs_evaluated: size of the space (of its part, for a shard's front).
        seconds: time the search took.
        shard: for one shard of a sharded search (:mod:`mess.search.shards`),
            ``{"index", "count", "space_size", "search"}`` (``search``: the statistics'
            and costs' fingerprint); None for a whole search.
    """

    exp: np.ndarray
    worst: np.ndarray
    miou: np.ndarray
    p90: np.ndarray
    ranks: np.ndarray
    counts: np.ndarray
    space: dict[str, Any]
    reference_miou: float
    configs_evaluated: int
    seconds: float = 0.0
    shard: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.exp)

    # decoding ---------------------------------------------------------------------------
    def configuration(self, i: int) -> Configuration:
        """The configuration of point ``i``."""
        row = self.ranks[i]
        k = int(row[0])
        ids = self.space["exit_ids"]
        nt, ng = len(self.space["pixel_thresholds"]), len(self.space["image_thresholds"])
        rules = []
        for code in row[1 : 1 + k]:
            e, rest = divmod(int(code), nt * ng)
            tp, ti = divmod(rest, ng)
            rules.append(
                ExitRule(
                    ids[e], self.space["pixel_thresholds"][tp], self.space["image_thresholds"][ti]
                )
            )
        t = int(row[-1])
        return Configuration(tuple(rules), FINAL if t == len(ids) else ids[t])

    def point(self, i: int) -> FrontPoint:
        """Point ``i`` with its configuration and metrics."""
        k = int(self.ranks[i, 0])
        counts = self.counts[i, : k + 1]
        n = float(self.space["num_samples"])
        return FrontPoint(
            configuration=self.configuration(i),
            miou=float(self.miou[i]),
            expected_cost=float(self.exp[i]),
            worst_cost=float(self.worst[i]),
            p90_cost=float(self.p90[i]),
            exit_fractions=[float(c) / n for c in counts],
            rank=(k, *(int(v) for v in self.ranks[i, 1 : 1 + k]), int(self.ranks[i, -1])),
        )

    def front_2d(self) -> list[FrontPoint]:
        """Configurations not dominated in (expected cost, mIoU), cheapest first; one per
        distinct (expected cost, mIoU) point: the one with the smallest rank."""
        if len(self) == 0:
            return []
        order = rank_order(self.ranks)
        idx = np.lexsort((order, -self.miou, self.exp))
        out = []
        best = -np.inf
        for i in idx:
            if self.miou[i] > best:
                out.append(self.point(int(i)))
                best = self.miou[i]
        return out

    # queries ----------------------------------------------------------------------------
    def _pick(self, mask: np.ndarray, keys: tuple[np.ndarray, ...]) -> int | None:
        cand = np.flatnonzero(mask)
        if len(cand) == 0:
            return None
        order = rank_order(self.ranks)[cand]
        best = np.lexsort((order, *[k[cand] for k in reversed(keys)]))[0]
        return int(cand[best])

    def query(
        self,
        objective: Objective,
        budget: float | None = None,
        *,
        max_drop: float | None = None,
        worst_budget: float | None = None,
    ) -> FrontPoint:
        """Answer a search query from the front.

        Args:
            objective: ``"max-accuracy"`` (needs ``budget``) or ``"min-cost"`` (needs
                ``max_drop``); ``"pareto"`` returns the most accurate point.
            budget: expected-cost budget.
            max_drop: allowed mIoU drop below the reference (0.001 = 0.1 pp).
            worst_budget: optional worst-cost budget.

        Returns:
            The optimal :class:`FrontPoint` under the tie rules of docs/DESIGN.md, "Search".

        Raises:
            NoFeasibleConfiguration: nothing meets the constraints.
            ValueError: a missing argument.
        """
        within = np.ones(len(self), dtype=bool)
        if worst_budget is not None:
            within = self.worst <= worst_budget
        if objective == "max-accuracy":
            if budget is None:
                raise ValueError("max-accuracy needs a budget")
            best = self._pick(within & (self.exp <= budget), (-self.miou, self.exp))
            if best is None:
                alts = [self._pick(np.ones(len(self), bool), (self.exp, -self.miou))]
                if worst_budget is not None:
                    alts.append(self._pick(within, (self.exp, -self.miou)))
                    alts.append(self._pick(np.ones(len(self), bool), (self.worst, self.exp)))
                raise NoFeasibleConfiguration(
                    f"no configuration has expected cost <= {budget:g}"
                    + (f" and worst cost <= {worst_budget:g}" if worst_budget is not None else ""),
                    self._points(alts),
                    self,
                )
        elif objective == "min-cost":
            if max_drop is None:
                raise ValueError("min-cost needs max_drop")
            floor = self.reference_miou - max_drop
            best = self._pick(within & (self.miou >= floor), (self.exp, -self.miou))
            if best is None:
                alts = [self._pick(np.ones(len(self), bool), (-self.miou, self.exp))]
                if worst_budget is not None:
                    alts.append(self._pick(within, (-self.miou, self.exp)))
                raise NoFeasibleConfiguration(
                    f"no configuration reaches mIoU >= {floor:.6f} (reference "
                    f"{self.reference_miou:.6f} - {max_drop:g})"
                    + (f" with worst cost <= {worst_budget:g}" if worst_budget is not None else ""),
                    self._points(alts),
                    self,
                )
        elif objective == "pareto":
            best = self._pick(within, (-self.miou, self.exp))
            if best is None:
                raise NoFeasibleConfiguration("the front is empty", [], self)
        else:
            raise ValueError(f"unknown objective {objective!r}")
        return self.point(best)

    def _points(self, alts: list[int | None]) -> list[FrontPoint]:
        seen: list[int] = []
        for a in alts:
            if a is not None and a not in seen:
                seen.append(a)
        return [self.point(i) for i in seen]

    # storage ----------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        header = {
            "format": FRONT_FORMAT,
            "version": 1,
            "space": self.space,
            "reference_miou": self.reference_miou,
            "configs_evaluated": self.configs_evaluated,
            "seconds": self.seconds,
        }
        if self.shard is not None:
            header["shard"] = dict(self.shard)
        return header

    def save(self, path: str | Path) -> None:
        """Write the front atomically: JSON for a ``.json`` path, else ``.npz``."""
        path = Path(path)
        with atomic_write(path) as fh:
            if path.suffix == ".json":
                body = {
                    **self._header(),
                    "points": {
                        "exp": self.exp.tolist(),
                        "worst": self.worst.tolist(),
                        "miou": self.miou.tolist(),
                        "p90": self.p90.tolist(),
                        "ranks": self.ranks.tolist(),
                        "counts": self.counts.tolist(),
                    },
                }
                fh.write(json.dumps(body).encode())
            else:
                np.savez_compressed(
                    fh,
                    header=np.array(json.dumps(self._header())),
                    exp=self.exp,
                    worst=self.worst,
                    miou=self.miou,
                    p90=self.p90,
                    ranks=self.ranks,
                    counts=self.counts,
                )

    @classmethod
    def load(cls, path: str | Path) -> ParetoFront:
        """Read a front written by :meth:`save`.

        Raises:
            ValueError: not a front file.
        """
        path = Path(path)
        try:
            if path.suffix == ".json":
                body = json.loads(path.read_text(encoding="utf-8"))
                header, arrays = body, body["points"]
            else:
                with np.load(path, allow_pickle=False) as data:
                    header = json.loads(str(data["header"]))
                    arrays = {
                        k: data[k] for k in ("exp", "worst", "miou", "p90", "ranks", "counts")
                    }
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a front file ({exc})") from None
        if header.get("format") != FRONT_FORMAT or header.get("version") != 1:
            raise ValueError(f"{path}: not a {FRONT_FORMAT} v1 file")
        width = int(header["space"]["max_exits"])
        return cls(
            exp=np.asarray(arrays["exp"], dtype=np.float64),
            worst=np.asarray(arrays["worst"], dtype=np.float64),
            miou=np.asarray(arrays["miou"], dtype=np.float64),
            p90=np.asarray(arrays["p90"], dtype=np.float64),
            ranks=np.asarray(arrays["ranks"], dtype=np.int64).reshape(-1, width + 2),
            counts=np.asarray(arrays["counts"], dtype=np.int64).reshape(-1, width + 1),
            space=header["space"],
            reference_miou=float(header["reference_miou"]),
            configs_evaluated=int(header["configs_evaluated"]),
            seconds=float(header.get("seconds", 0.0)),
            shard=_shard_record(path, header.get("shard")),
        )


def _shard_record(path: Path, record: Any) -> dict[str, Any] | None:
    """A front file's shard record, checked."""
    if record is None:
        return None
    keys = ("index", "count", "space_size")
    if (
        not isinstance(record, dict)
        or not all(
            isinstance(record.get(k), int) and not isinstance(record.get(k), bool) for k in keys
        )
        or not isinstance(record.get("search"), str)
    ):
        raise ValueError(f"{path}: bad shard record {record!r}")
    return {**{k: int(record[k]) for k in keys}, "search": record["search"]}
