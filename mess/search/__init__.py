"""Exact exhaustive search of early exits and exit policy (torch-free).

>>> from mess.search import search
>>> result = search(stats, costs, objective="max-accuracy", budget=30.0)  # doctest: +SKIP
>>> result.configuration.to_json()  # doctest: +SKIP

Several cost tables (a fleet of devices) share one walk of the space:

>>> fronts = compute_fronts(stats, [phone_costs, board_costs])  # doctest: +SKIP
>>> answers = search_fleet(stats, [phone_costs, board_costs], objective="pareto")  # doctest: +SKIP
"""

from __future__ import annotations

from mess.search.api import compute_front, compute_fronts, resolve, search, search_fleet
from mess.search.configuration import Configuration, ExitRule
from mess.search.front import FrontPoint, NoFeasibleConfiguration, ParetoFront
from mess.search.problem import (
    DEFAULT_IMAGE_THRESHOLDS,
    Metrics,
    Problem,
    SearchSpace,
    evaluate,
)
from mess.search.result import SearchResult

__all__ = [
    "DEFAULT_IMAGE_THRESHOLDS",
    "Configuration",
    "ExitRule",
    "FrontPoint",
    "Metrics",
    "NoFeasibleConfiguration",
    "ParetoFront",
    "Problem",
    "SearchResult",
    "SearchSpace",
    "compute_front",
    "compute_fronts",
    "evaluate",
    "resolve",
    "search",
    "search_fleet",
]
