"""Checks of a search front against the brute force, shared by the engine and fleet tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from mess.search import NoFeasibleConfiguration
from mess.search.brute import Evaluated
from mess.search.front import ParetoFront


def point_key(p: Any) -> tuple:
    """Everything a query answers about a point, for exact comparison."""
    return (p.rank, p.miou, p.expected_cost, p.worst_cost, p.p90_cost, p.exit_fractions)


def answer(fn: Callable[[], Any]) -> tuple | None:
    """The answer's key, or None when nothing is feasible."""
    try:
        return point_key(fn())
    except NoFeasibleConfiguration:
        return None


def assert_front_equals_brute(
    front: ParetoFront, brute: Evaluated, rnd: random.Random, *, rounds: int
) -> None:
    """The same 2-D front, and the same answer to random queries of every objective."""
    assert front.configs_evaluated == len(brute.ranks)
    assert front.reference_miou == brute.reference_miou
    assert [point_key(p) for p in front.front_2d()] == [point_key(p) for p in brute.front_2d()]
    exps = sorted({m.expected_cost for m in brute.metrics})
    worsts = sorted({m.worst_cost for m in brute.metrics})
    for _ in range(rounds):
        budget = rnd.choice(exps) if rnd.random() < 0.7 else rnd.uniform(-1, max(exps))
        worst = None
        if rnd.random() < 0.5:
            worst = rnd.choice(worsts) if rnd.random() < 0.7 else rnd.uniform(0, max(worsts))
        drop = rnd.choice([0.0, 0.01, 0.05, 0.3, -0.01])
        queries = [
            ("max-accuracy", {"budget": budget}),
            ("min-cost", {"max_drop": drop}),
            ("pareto", {}),
        ]
        for objective, kw in queries:
            want = answer(lambda: brute.best(objective, worst_budget=worst, **kw))  # noqa: B023
            got = answer(lambda: front.query(objective, worst_budget=worst, **kw))  # noqa: B023
            assert got == want, (objective, kw, worst)
