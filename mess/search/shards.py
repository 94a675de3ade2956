"""Sharded search: one search split into parts that run apart, merged into the exact front.

The space is cut along the first level of the walk (docs/DESIGN.md, "Search"): a unit is
either the configurations without early exits (the original network and, with truncation,
each exit alone) or every configuration whose chain starts with one rule of one pass (its
level-1 subtree). The units are dealt to ``count`` shards by a deterministic greedy balance
of their sizes, so every machine computes the same plan from the same space without talking
to the others. Each shard's front is the exact front of its part of the space; the front of
the union of the shards' fronts is the front of the whole space (:func:`merge_fronts`).

>>> fronts = [compute_front(stats, costs, shard=Shard(i, 3)) for i in range(3)]  # doctest: +SKIP
>>> merge_fronts(fronts)  # the unsharded front, point for point  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import heapq
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mess.costs import CostTable
from mess.search.front import ParetoFront, exact_front
from mess.stats import Stats


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of a search split into ``count`` parts.

    Raises:
        TypeError: an index or count that is not an integer.
        ValueError: ``count < 1`` or an index outside ``0 .. count - 1``.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise TypeError(f"shard {name} must be an integer, got {value!r}")
            try:
                object.__setattr__(self, name, operator.index(value))
            except TypeError:
                raise TypeError(f"shard {name} must be an integer, got {value!r}") from None
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard index must be in 0..{self.count - 1} for {self.count} shard(s), "
                f"got {self.index}"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` (0-based ``I``) -> ``Shard(I, N)``.

        Raises:
            ValueError: not ``I/N`` with integers, or an invalid shard.
        """
        head, sep, tail = text.partition("/")
        try:
            if not sep:
                raise ValueError
            index, count = int(head), int(tail)
        except ValueError:
            raise ValueError(
                f"invalid shard {text!r}: expected I/N, e.g. 0/4 (I counts from 0)"
            ) from None
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def to_json(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}


def assign(weights: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    """The shard of each unit: the heaviest unit first, each to the least loaded shard (ties:
    the lower shard index, then the lower unit index). Deterministic: every machine gets
    the same plan from the same weights.

    Args:
        weights: configurations per unit.
        count: number of shards (at least 1).

    Returns:
        ``(U,)`` int64 shard index of each unit; with more shards than units some shards
        get nothing.
    """
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    w = np.asarray(weights, dtype=np.int64)
    owner = np.zeros(len(w), dtype=np.int64)
    if count == 1:
        return owner
    loads = [(0, s) for s in range(count)]
    for u in np.lexsort((np.arange(len(w)), -w)).tolist():
        load, s = heapq.heappop(loads)
        owner[u] = s
        heapq.heappush(loads, (load + int(w[u]), s))
    return owner


def fingerprints(stats: Stats, tables: Sequence[CostTable]) -> list[str]:
    """Per cost table, a sha256 of everything its front depends on besides the search
    options (which the front's ``space`` holds): the statistics' arrays and metadata and
    the table's costs and unit. Shards record it so that the merge refuses parts of
    different searches, such as two devices' tables in one unit."""
    h = hashlib.sha256()
    h.update(json.dumps(stats.meta, sort_keys=True, default=str).encode())
    for a in (stats.intersection, stats.predicted, stats.target, stats.confidence):
        arr = np.ascontiguousarray(a)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.data)
    base = h.digest()
    out = []
    for t in tables:
        costs = {
            "unit": t.unit,
            "segments": list(t.segments.items()),
            "heads": sorted(t.heads.items()),
            "policy": sorted(t.policy.items()),
        }
        out.append(hashlib.sha256(base + json.dumps(costs).encode()).hexdigest())
    return out


def _check_parts(fronts: Sequence[ParetoFront]) -> int:
    """Check that ``fronts`` are every shard of one search, once each; returns the space
    size."""
    if not fronts:
        raise ValueError("give at least one shard front to merge")
    infos = []
    for i, f in enumerate(fronts):
        if f.shard is None:
            raise ValueError(f"front {i} is not a shard's front (it has no shard record)")
        infos.append(f.shard)
    first = fronts[0]
    count = infos[0]["count"]
    for i, (f, info) in enumerate(zip(fronts, infos, strict=True)):
        if info["count"] != count:
            raise ValueError(
                f"front {i} is shard {info['index']}/{info['count']}, front 0 one of {count}: "
                "shards of different splits cannot be merged"
            )
        if info["space_size"] != infos[0]["space_size"] or f.space != first.space:
            raise ValueError(
                f"front {i} comes from another search space than front 0 (other stats, "
                "options or cost unit)"
            )
        if f.reference_miou != first.reference_miou or info.get("search") != infos[0].get("search"):
            raise ValueError(
                f"front {i} comes from other statistics or costs than front 0 (another search)"
            )
    seen = sorted(info["index"] for info in infos)
    duplicate = sorted({s for s in seen if seen.count(s) > 1})
    if duplicate:
        raise ValueError(f"shard(s) {', '.join(map(str, duplicate))} given more than once")
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise ValueError(
            f"missing shard(s) {', '.join(f'{m}/{count}' for m in missing)}: the merge of "
            "fewer shards is not the whole space's front"
        )
    size = int(infos[0]["space_size"])
    evaluated = sum(int(f.configs_evaluated) for f in fronts)
    if evaluated != size:
        raise ValueError(
            f"the shards evaluated {evaluated} configurations, the space has {size}: "
            "they do not come from one split of this space"
        )
    return size


def merge_fronts(fronts: Sequence[ParetoFront]) -> ParetoFront:
    """Merge the fronts of every shard of one search into the unsharded front.

    The result equals the front of the unsharded search bit for bit on every stored array,
    header and point order (the exact front's sweep order, a total order); ``seconds`` is
    the sum of the shards' (the work done), and it records no shard.

    Args:
        fronts: one front per shard ``0 .. N - 1`` of one split, in any order.

    Raises:
        ValueError: no fronts, a front that is no shard's, shards of different splits,
            spaces or statistics, a shard missing or given twice, or parts that do not add
            up to the space.
    """
    size = _check_parts(fronts)
    cat = {
        name: np.concatenate([getattr(f, name) for f in fronts])
        for name in ("exp", "worst", "miou", "p90", "ranks", "counts")
    }
    keep = exact_front(cat["exp"], cat["worst"], cat["miou"], cat["ranks"])
    first = fronts[0]
    return ParetoFront(
        **{name: a[keep] for name, a in cat.items()},
        space=first.space,
        reference_miou=first.reference_miou,
        configs_evaluated=size,
        seconds=float(sum(f.seconds for f in fronts)),
    )


def merge_fleet(shards: Sequence[Sequence[ParetoFront]]) -> list[ParetoFront]:
    """Merge a sharded fleet search: ``shards[s][k]`` is shard ``s``'s front of table ``k``.

    Returns:
        One merged front per cost table, in order (:func:`merge_fronts` per table).

    Raises:
        ValueError: shards with different numbers of tables, or as :func:`merge_fronts`
            (the message names the table).
    """
    if not shards:
        raise ValueError("give at least one shard to merge")
    k = len(shards[0])
    for s, part in enumerate(shards):
        if len(part) != k:
            raise ValueError(f"shard {s} holds {len(part)} front(s), shard 0 holds {k}")
    out = []
    for t in range(k):
        try:
            out.append(merge_fronts([part[t] for part in shards]))
        except ValueError as exc:
            raise ValueError(f"cost table {t}: {exc}") from None
    return out


__all__ = ["Shard", "assign", "merge_fleet", "merge_fronts"]
