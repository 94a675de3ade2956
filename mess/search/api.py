"""``search()``: the public entry point of the exhaustive search."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from mess.costs import CostTable
from mess.search.blas import cuda_available
from mess.search.engine import run
from mess.search.front import NoFeasibleConfiguration, Objective, ParetoFront
from mess.search.kernels import HAVE_NUMBA
from mess.search.problem import Problem, SearchSpace
from mess.search.result import SearchResult
from mess.search.shards import Shard, fingerprints
from mess.stats import Stats

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]
Backend = Literal["auto", "numba", "numpy", "torch"]
OBJECTIVES = ("max-accuracy", "min-cost", "pareto")


def resolve(device: str = "auto", backend: str = "auto") -> tuple[str, str]:
    """Resolve ``(device, backend)``.

    ``auto`` never picks an engine slower than numba on the CPU: the numba kernel when numba
    is installed, else numpy, both on the CPU. The torch engine runs only when asked for
    (``device="cuda"`` or ``backend="torch"``), as it has not been measured faster (see
    ``bench/RESULTS.md``); ``backend="torch"`` with ``device="auto"`` takes CUDA where an
    NVIDIA driver is present and torch sees a GPU (torch is not imported otherwise), else
    runs on CPU tensors.

    Raises:
        ValueError: an unknown name, a CPU backend asked for on CUDA, or numba asked for
            without numba installed.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if backend not in ("auto", "numba", "numpy", "torch"):
        raise ValueError(f"backend must be auto, numba, numpy or torch, got {backend!r}")
    if device == "cuda":
        if backend not in ("auto", "torch"):
            raise ValueError(f"backend {backend!r} runs on the CPU only")
        return device, "torch"
    if backend == "torch":
        return ("cuda" if device == "auto" and cuda_available() else "cpu"), backend
    if backend == "auto":
        backend = "numba" if HAVE_NUMBA else "numpy"
    if backend == "numba" and not HAVE_NUMBA:
        raise ValueError("backend 'numba' needs numba (pip install 'mess[fast]')")
    return "cpu", backend


def check_fleet(tables: Sequence[CostTable]) -> None:
    """Check that cost tables can share one search: they price the same parts.

    Raises:
        ValueError: no table, or a table whose segments (in order), heads or policy keys
            differ from the first one's.
    """
    if not tables:
        raise ValueError("give at least one cost table")
    first = tables[0]
    for i, table in enumerate(tables[1:], start=1):
        for section in ("segments", "heads", "policy"):
            mine, theirs = list(getattr(table, section)), list(getattr(first, section))
            same = mine == theirs if section == "segments" else set(mine) == set(theirs)
            if not same:
                extra = sorted(set(mine) ^ set(theirs))
                what = f" (differ in {', '.join(map(repr, extra[:3]))})" if extra else " (order)"
                raise ValueError(
                    f"cost table {i} prices other {section} than cost table 0{what}: the "
                    "tables of one fleet search must cover the same parts"
                )


def check_units(tables: Sequence[CostTable]) -> None:
    """Refuse tables in different units where one budget is read in all of them.

    Raises:
        ValueError: the units differ.
    """
    _check_unit_names([t.unit for t in tables])


def _check_unit_names(names: Sequence[str]) -> None:
    units = sorted(set(names))
    if len(units) > 1:
        raise ValueError(
            f"cost tables in different units ({', '.join(units)}): one budget cannot apply "
            "to all; search them separately"
        )


def compute_fronts(
    stats: Stats,
    costs: Sequence[CostTable],
    *,
    max_exits: int = 3,
    image_thresholds: Sequence[float] | None = None,
    per_exit_thresholds: bool = False,
    truncation: bool = True,
    exits: Sequence[str] | None = None,
    device: Device = "auto",
    backend: Backend = "auto",
    progress: Any = None,
    threads: int | None = None,
    shard: Shard | None = None,
) -> list[ParetoFront]:
    """Evaluate the whole space once for several cost tables (a fleet of devices) and
    return each table's exact :class:`ParetoFront`, in order.

    The device-independent work (enumeration, the exit each sample takes, mIoU, exit
    fractions) is done once for all tables; each front is the one :func:`compute_front`
    gives for its table alone, point for point (its ``seconds`` is the fleet's). Tables in
    different units are accepted: fronts do not mix them.

    Args: as :func:`search`; ``costs`` lists the tables; ``shard``: compute only this
        shard's part of the space (:mod:`mess.search.shards`; every engine), whose fronts
        :func:`mess.search.shards.merge_fleet` merges into the whole search's.

    Raises:
        ValueError: bad arguments, stats and costs that do not fit, or tables that price
            different parts (:func:`check_fleet`).
    """
    if shard is not None and not isinstance(shard, Shard):
        raise TypeError(f"shard must be a Shard, got {type(shard).__name__}")
    check_fleet(costs)
    dev, back = resolve(device, backend)
    spaces = [
        SearchSpace(
            Problem(stats, table),
            max_exits=max_exits,
            image_thresholds=image_thresholds,
            per_exit_thresholds=per_exit_thresholds,
            truncation=truncation,
            exits=exits,
        )
        for table in costs
    ]
    log.info(
        "searching %d configurations for %d cost table(s) (%s on %s%s)",
        spaces[0].size(),
        len(spaces),
        back,
        dev,
        f", shard {shard}" if shard is not None else "",
    )
    fronts = run(spaces, backend=back, device=dev, progress=progress, threads=threads, shard=shard)
    if shard is not None:
        for front, key in zip(fronts, fingerprints(stats, costs), strict=True):
            if front.shard is not None:
                front.shard["search"] = key
    return fronts


def compute_front(
    stats: Stats,
    costs: CostTable,
    *,
    max_exits: int = 3,
    image_thresholds: Sequence[float] | None = None,
    per_exit_thresholds: bool = False,
    truncation: bool = True,
    exits: Sequence[str] | None = None,
    device: Device = "auto",
    backend: Backend = "auto",
    progress: Any = None,
    threads: int | None = None,
    shard: Shard | None = None,
) -> ParetoFront:
    """Evaluate the whole space once and return its exact :class:`ParetoFront`.

    Args: as :func:`search` (``threads``: numba worker threads, default all cores);
        ``shard``: only this shard's part (:mod:`mess.search.shards`; merge the shards'
        fronts with :func:`mess.search.shards.merge_fronts`).

    Returns:
        The front, answering any later query with :meth:`ParetoFront.query`.
    """
    return compute_fronts(
        stats,
        [costs],
        max_exits=max_exits,
        image_thresholds=image_thresholds,
        per_exit_thresholds=per_exit_thresholds,
        truncation=truncation,
        exits=exits,
        device=device,
        backend=backend,
        progress=progress,
        threads=threads,
        shard=shard,
    )[0]


def _check_query(objective: str, budget: float | None, max_drop: float | None) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "max-accuracy" and budget is None:
        raise ValueError("max-accuracy needs a budget")
    if objective == "min-cost" and max_drop is None:
        raise ValueError("min-cost needs max_drop")


def search_fleet(
    stats: Stats,
    costs: Sequence[CostTable],
    *,
    objective: Objective,
    budget: float | None = None,
    worst_budget: float | None = None,
    max_drop: float | None = None,
    max_exits: int = 3,
    image_thresholds: Sequence[float] | None = None,
    per_exit_thresholds: bool = False,
    truncation: bool = True,
    exits: Sequence[str] | None = None,
    device: Device = "auto",
    progress: Any = None,
    backend: Backend = "auto",
    threads: int | None = None,
) -> list[SearchResult | NoFeasibleConfiguration]:
    """:func:`search` for several cost tables at once (docs/DESIGN.md, "Search").

    One walk of the space (:func:`compute_fronts`) answers the same query for every table.

    Args: as :func:`search`; ``costs`` lists the tables, all in one unit when a cost budget
        (``budget`` or ``worst_budget``) is given, as it is read in each table's unit.

    Returns:
        Per table, in order: its :class:`SearchResult`, equal to what :func:`search` returns
        for that table alone but for ``seconds`` (the whole fleet search's), or the
        :class:`NoFeasibleConfiguration` that search would raise (with ``.alternatives``).

    Raises:
        ValueError: bad arguments, stats and costs that do not fit, tables that price
            different parts, or different units under a cost budget.
    """
    _check_query(objective, budget, max_drop)
    if budget is not None or worst_budget is not None:
        check_units(costs)
    t0 = time.perf_counter()
    fronts = compute_fronts(
        stats,
        costs,
        max_exits=max_exits,
        image_thresholds=image_thresholds,
        per_exit_thresholds=per_exit_thresholds,
        truncation=truncation,
        exits=exits,
        device=device,
        backend=backend,
        progress=progress,
        threads=threads,
    )
    return answer_fronts(
        fronts,
        objective=objective,
        budget=budget,
        worst_budget=worst_budget,
        max_drop=max_drop,
        seconds=time.perf_counter() - t0,
    )


def answer_fronts(
    fronts: Sequence[ParetoFront],
    *,
    objective: Objective,
    budget: float | None = None,
    worst_budget: float | None = None,
    max_drop: float | None = None,
    seconds: float | None = None,
) -> list[SearchResult | NoFeasibleConfiguration]:
    """Answer one query from each front, as :func:`search_fleet` does (for fronts computed
    apart, such as merged shards).

    Args: as :func:`search_fleet`; ``seconds``: the time to report (default each front's).

    Raises:
        ValueError: bad arguments, or fronts in different units under a cost budget.
    """
    _check_query(objective, budget, max_drop)
    if budget is not None or worst_budget is not None:
        _check_unit_names([str(f.space.get("unit")) for f in fronts])
    out: list[SearchResult | NoFeasibleConfiguration] = []
    for front in fronts:
        try:
            point = front.query(objective, budget, max_drop=max_drop, worst_budget=worst_budget)
        except NoFeasibleConfiguration as exc:
            out.append(exc)
            continue
        took = front.seconds if seconds is None else seconds
        out.append(SearchResult.from_point(objective, point, front, took))
    return out


def search(
    stats: Stats,
    costs: CostTable,
    *,
    objective: Objective,
    budget: float | None = None,
    worst_budget: float | None = None,
    max_drop: float | None = None,
    max_exits: int = 3,
    image_thresholds: Sequence[float] | None = None,
    per_exit_thresholds: bool = False,
    truncation: bool = True,
    exits: Sequence[str] | None = None,
    device: Device = "auto",
    progress: Any = None,
    backend: Backend = "auto",
    threads: int | None = None,
) -> SearchResult:
    """Exact exhaustive search for the best configuration (docs/DESIGN.md, "Search").

    Args:
        stats: exit statistics.
        costs: a cost table compatible with ``stats`` (several: :func:`search_fleet`).
        objective: ``"max-accuracy"``, ``"min-cost"`` or ``"pareto"``.
        budget: expected-cost budget (``max-accuracy``).
        worst_budget: optional worst-cost budget.
        max_drop: allowed mIoU drop below the original network (``min-cost``).
        max_exits: most early exits.
        image_thresholds: the image-threshold grid (default 0.00, 0.05, ..., 0.95).
        per_exit_thresholds: one threshold pair per exit instead of a shared one.
        truncation: allow an early exit as the always-taken terminal.
        exits: ids of the early exits to consider (default all).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: ``callable(done, total)`` or a rich ``Progress``.
        backend: ``"auto"``, ``"numba"``, ``"numpy"`` or ``"torch"`` (``torch`` on
            ``device="cpu"`` runs the GPU code path on CPU tensors).
        threads: numba worker threads (default all cores).

    Returns:
        The :class:`SearchResult`.

    Raises:
        NoFeasibleConfiguration: nothing meets the constraints (``.alternatives``).
        ValueError: bad arguments, or stats and costs that do not fit.
    """
    (answer,) = search_fleet(
        stats,
        [costs],
        objective=objective,
        budget=budget,
        worst_budget=worst_budget,
        max_drop=max_drop,
        max_exits=max_exits,
        image_thresholds=image_thresholds,
        per_exit_thresholds=per_exit_thresholds,
        truncation=truncation,
        exits=exits,
        device=device,
        progress=progress,
        backend=backend,
        threads=threads,
    )
    if isinstance(answer, NoFeasibleConfiguration):
        raise answer
    return answer
