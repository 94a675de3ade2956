"""``search()``: the public entry point of the exhaustive search."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from mess.costs import CostTable
from mess.search.blas import cuda_available
from mess.search.engine import run
from mess.search.front import Objective, ParetoFront
from mess.search.kernels import HAVE_NUMBA
from mess.search.problem import Problem, SearchSpace
from mess.search.result import SearchResult
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
) -> ParetoFront:
    """Evaluate the whole space once and return its exact :class:`ParetoFront`.

    Args: as :func:`search` (``threads``: numba worker threads, default all cores).

    Returns:
        The front, answering any later query with :meth:`ParetoFront.query`.
    """
    dev, back = resolve(device, backend)
    space = SearchSpace(
        Problem(stats, costs),
        max_exits=max_exits,
        image_thresholds=image_thresholds,
        per_exit_thresholds=per_exit_thresholds,
        truncation=truncation,
        exits=exits,
    )
    log.info("searching %d configurations (%s on %s)", space.size(), back, dev)
    return run(space, backend=back, device=dev, progress=progress, threads=threads)


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
        costs: a cost table compatible with ``stats``.
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
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "max-accuracy" and budget is None:
        raise ValueError("max-accuracy needs a budget")
    if objective == "min-cost" and max_drop is None:
        raise ValueError("min-cost needs max_drop")
    t0 = time.perf_counter()
    front = compute_front(
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
    point = front.query(objective, budget, max_drop=max_drop, worst_budget=worst_budget)
    return SearchResult.from_point(objective, point, front, time.perf_counter() - t0)
