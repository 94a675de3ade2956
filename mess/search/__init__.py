"""Exact exhaustive search of early exits and exit policy (torch-free).

>>> from mess.search import search
>>> result = search(stats, costs, objective="max-accuracy", budget=30.0)  # doctest: +SKIP
>>> result.configuration.to_json()  # doctest: +SKIP

Several cost tables (a fleet of devices) share one walk of the space:

>>> fronts = compute_fronts(stats, [phone_costs, board_costs])  # doctest: +SKIP
>>> answers = search_fleet(stats, [phone_costs, board_costs], objective="pareto")  # doctest: +SKIP

A search split into shards that run apart merges into exactly the unsharded front:

>>> parts = [compute_front(stats, costs, shard=Shard(i, 4)) for i in range(4)]  # doctest: +SKIP
>>> front = merge_fronts(parts)  # doctest: +SKIP
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
from mess.search.shards import Shard, merge_fleet, merge_fronts

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
    "Shard",
    "compute_front",
    "compute_fronts",
    "evaluate",
    "merge_fleet",
    "merge_fronts",
    "resolve",
    "search",
    "search_fleet",
]
