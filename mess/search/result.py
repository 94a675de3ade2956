"""The answer of a search: one configuration, its metrics, and the front for ``pareto``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mess.search.configuration import Configuration
from mess.search.front import FrontPoint, Objective, ParetoFront


@dataclass
class SearchResult:
    """What :func:`mess.search.search` returns.

    For ``pareto`` the top-level configuration and metrics are those of the front's most
    accurate point, and ``front`` lists the whole two-dimensional front, cheapest first.
    """

    objective: Objective
    configuration: Configuration
    miou: float
    expected_cost: float
    worst_cost: float
    p90_cost: float
    exit_fractions: list[float]
    reference_miou: float
    configs_evaluated: int
    seconds: float
    front: list[FrontPoint] = field(default_factory=list)
    pareto: ParetoFront | None = field(default=None, repr=False)

    @classmethod
    def from_point(
        cls, objective: Objective, point: FrontPoint, front: ParetoFront, seconds: float
    ) -> SearchResult:
        return cls(
            objective=objective,
            configuration=point.configuration,
            miou=point.miou,
            expected_cost=point.expected_cost,
            worst_cost=point.worst_cost,
            p90_cost=point.p90_cost,
            exit_fractions=list(point.exit_fractions),
            reference_miou=front.reference_miou,
            configs_evaluated=front.configs_evaluated,
            seconds=seconds,
            front=front.front_2d() if objective == "pareto" else [],
            pareto=front,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``mess search --json`` object (docs/DESIGN.md, "Search")."""
        out: dict[str, Any] = {
            "objective": self.objective,
            "configuration": self.configuration.to_json(),
            "miou": self.miou,
            "expected_cost": self.expected_cost,
            "worst_cost": self.worst_cost,
            "p90_cost": self.p90_cost,
            "exit_fractions": list(self.exit_fractions),
            "reference_miou": self.reference_miou,
            "configs_evaluated": self.configs_evaluated,
            "seconds": self.seconds,
        }
        if self.objective == "pareto":
            out["front"] = [p.to_json() for p in self.front]
        return out
