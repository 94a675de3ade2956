"""Bodies of ``POST /v1/search`` and its answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.verifications.schemas import Verified

Finite = Field(default=None, gt=0, allow_inf_nan=False)


class SearchRequest(BaseModel):
    """A deployment constraint: the best configuration of a supernet for a device and budget."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "supernet_id": "0" * 64,
                    "device": "pixel-7-lab-1",
                    "objective": "max-accuracy",
                    "budget_ms": 30.0,
                },
                {
                    "supernet_id": "0" * 64,
                    "device": "gflops",
                    "objective": "min-cost",
                    "max_drop": 0.001,
                },
            ]
        },
    )

    supernet_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    device: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description='a registered device (its latest profile), or "gflops" for the GFLOPs table',
    )
    objective: Literal["max-accuracy", "min-cost", "pareto"]
    budget_ms: float | None = Finite
    budget: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="budget in the table's unit"
    )
    worst_budget_ms: float | None = Finite
    worst_budget: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_drop: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    max_exits: int = Field(default=3, ge=0, le=4)
    image_thresholds: list[float] | None = Field(default=None, min_length=1, max_length=101)
    per_exit_thresholds: bool = False
    truncation: bool = True
    wait_seconds: float | None = Field(default=None, ge=0, le=300, allow_inf_nan=False)
    verify: bool = Field(
        default=False,
        description="answer only with a configuration timed whole on the device within the "
        "budget (202 while it is being verified)",
    )

    @model_validator(mode="after")
    def _check(self) -> SearchRequest:
        if self.image_thresholds is not None:
            if any(not 0 <= t <= 1 for t in self.image_thresholds):
                raise ValueError("image_thresholds must lie in [0, 1]")
            if sorted(set(self.image_thresholds)) != self.image_thresholds:
                raise ValueError("image_thresholds must be strictly increasing")
        if self.objective == "max-accuracy" and self.cost_budget is None:
            raise ValueError("max-accuracy needs budget_ms (or budget)")
        if self.objective == "min-cost" and self.max_drop is None:
            raise ValueError("min-cost needs max_drop (0.001 = 0.1 pp)")
        if self.verify and (self.objective != "max-accuracy" or self.device == "gflops"):
            raise ValueError("verify needs max-accuracy with a budget on a device, not gflops")
        return self

    @property
    def cost_budget(self) -> float | None:
        return self.budget_ms if self.budget_ms is not None else self.budget

    @property
    def cost_worst_budget(self) -> float | None:
        return self.worst_budget_ms if self.worst_budget_ms is not None else self.worst_budget

    def options(self) -> dict[str, Any]:
        """What the front depends on besides supernet and cost table."""
        return {
            "max_exits": self.max_exits,
            "image_thresholds": self.image_thresholds,
            "per_exit_thresholds": self.per_exit_thresholds,
            "truncation": self.truncation,
        }


class SearchPending(BaseModel):
    search_id: int
    status: str = Field(
        description="queued | running: POST again or poll GET /v1/searches/{id}; verifying: "
        "the chosen configuration is being timed on the device (POST again)"
    )
    job_id: int | None = Field(default=None, description="verifying: the verification job")


class SearchRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 5,
                    "supernet_id": "3f1c" + "0" * 60,
                    "profile_id": 12,
                    "unit": "ms",
                    "options": {"max_exits": 3, "truncation": True},
                    "status": "done",
                    "error": None,
                    "reference_miou": 0.459,
                    "configs_evaluated": 2601633,
                    "seconds": 0.6,
                }
            ]
        }
    )

    id: int
    supernet_id: str
    profile_id: int | None
    unit: str
    options: dict[str, Any]
    status: str
    error: str | None
    reference_miou: float | None
    configs_evaluated: int | None
    seconds: float | None
    shards: int | None = Field(
        default=None,
        description="split into this many shards that workers compute apart "
        "(MESS_SEARCH_SHARDS); null: computed whole",
    )
    shards_done: int | None = Field(
        default=None, description="how many of its shards are computed (null: not split)"
    )


class SearchAnswer(BaseModel):
    """The fields of ``mess search --json`` plus where they come from."""

    search_id: int
    configuration_id: str
    objective: str
    configuration: dict[str, Any]
    miou: float
    expected_cost: float
    worst_cost: float
    p90_cost: float
    exit_fractions: list[float]
    reference_miou: float
    configs_evaluated: int
    seconds: float
    unit: str
    device: str
    profile_id: int | None
    front: list[dict[str, Any]] = Field(description="the speed/accuracy front, cheapest first")
    verified: Verified | None = Field(
        default=None,
        description="null unless the query asked to verify: the configuration timed whole on "
        "the device (measured expected, worst and per-path latency beside the prediction)",
    )
