"""The naive reference: every configuration evaluated one by one with :func:`evaluate`.

Answers come straight from the definitions (docs/DESIGN.md, "Search"), with no front, no
bins and no shared sums, so that the fast engine can be checked against it on small spaces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mess.search.front import FrontPoint, NoFeasibleConfiguration, Objective
from mess.search.problem import Metrics, Rank, SearchSpace


@dataclass
class Evaluated:
    """Every configuration of a space with its metrics."""

    space: SearchSpace
    ranks: list[Rank]
    metrics: list[Metrics]
    seconds: float

    @classmethod
    def of(cls, space: SearchSpace) -> Evaluated:
        t0 = time.perf_counter()
        ranks = list(space.ranks())
        metrics = [space.problem.evaluate(space.configuration(r)) for r in ranks]
        return cls(space, ranks, metrics, time.perf_counter() - t0)

    def point(self, i: int) -> FrontPoint:
        m = self.metrics[i]
        return FrontPoint(
            configuration=self.space.configuration(self.ranks[i]),
            miou=m.miou,
            expected_cost=m.expected_cost,
            worst_cost=m.worst_cost,
            p90_cost=m.p90_cost,
            exit_fractions=m.exit_fractions,
            rank=self.ranks[i],
        )

    @property
    def reference_miou(self) -> float:
        return self.metrics[self.ranks.index((0, self.space.problem.num_exits))].miou

    def best(
        self,
        objective: Objective,
        budget: float | None = None,
        max_drop: float | None = None,
        worst_budget: float | None = None,
    ) -> FrontPoint:
        """The optimum by the definitions (raises NoFeasibleConfiguration)."""
        ms = self.metrics
        ok = [worst_budget is None or m.worst_cost <= worst_budget for m in ms]
        if objective == "max-accuracy":
            assert budget is not None
            feasible = [i for i, m in enumerate(ms) if ok[i] and m.expected_cost <= budget]
            key = lambda i: (-ms[i].miou, ms[i].expected_cost, self.ranks[i])  # noqa: E731
        elif objective == "min-cost":
            assert max_drop is not None
            floor = self.reference_miou - max_drop
            feasible = [i for i, m in enumerate(ms) if ok[i] and m.miou >= floor]
            key = lambda i: (ms[i].expected_cost, -ms[i].miou, self.ranks[i])  # noqa: E731
        else:
            feasible = [i for i in range(len(ms)) if ok[i]]
            key = lambda i: (-ms[i].miou, ms[i].expected_cost, self.ranks[i])  # noqa: E731
        if not feasible:
            raise NoFeasibleConfiguration("no feasible configuration (brute force)", [])
        return self.point(min(feasible, key=key))

    def front_2d(self) -> list[FrontPoint]:
        """Configurations not dominated in (expected cost, mIoU), one per distinct point
        (the smallest rank), cheapest first: pairwise comparisons, no sweep."""
        exp = np.array([m.expected_cost for m in self.metrics])
        miou = np.array([m.miou for m in self.metrics])
        chosen: dict[tuple[float, float], int] = {}
        for i in range(len(exp)):
            dominated = (exp <= exp[i]) & (miou >= miou[i]) & ((exp < exp[i]) | (miou > miou[i]))
            if dominated.any():
                continue
            key = (float(exp[i]), float(miou[i]))
            if key not in chosen or self.ranks[i] < self.ranks[chosen[key]]:
                chosen[key] = i
        return [self.point(i) for _, i in sorted(chosen.items())]

    def configs_per_second(self) -> float:
        return len(self.ranks) / self.seconds if self.seconds > 0 else float("inf")
