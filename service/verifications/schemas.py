"""Bodies of verifications and cost corrections as answers show them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_VERIFIED: dict[str, Any] = {
    "id": 3,
    "configuration_id": "c0de" + "0" * 60,
    "device": "pi-5",
    "profile_id": 12,
    "expected_ms": 31.2,
    "worst_ms": 44.0,
    "p90_ms": 44.0,
    "paths_ms": [18.1, 44.0],
    "predicted_paths_ms": [15.0, 36.2],
    "exit_fractions": [0.55, 0.45],
    "predicted_expected_ms": 29.4,
    "correction_version": 1,
    "exit_agreement": None,
    "images": None,
    "context": {"runtime": "onnxruntime", "intra_op_threads": 1},
    "measured_at": "2026-11-25T09:02:00Z",
}


class Verified(BaseModel):
    """A configuration's tailored model timed whole on a device, next to the prediction."""

    model_config = ConfigDict(json_schema_extra={"examples": [_VERIFIED]})

    id: int
    configuration_id: str
    device: str
    profile_id: int = Field(description="the profile version whose prediction it checks")
    expected_ms: float = Field(description="sum over paths of exit fraction x path mean")
    worst_ms: float = Field(description="the slowest path")
    p90_ms: float
    paths_ms: list[float] = Field(description="mean of each exit path's timed runs, terminal last")
    predicted_paths_ms: list[float] = Field(description="the profile's table, uncorrected")
    exit_fractions: list[float] = Field(description="on the calibration split (the stats)")
    predicted_expected_ms: float = Field(
        description="what the search predicted (with the correction of correction_version)"
    )
    correction_version: int | None
    exit_agreement: float | None = Field(
        description="fraction of sample images leaving where the stats predict; null without"
    )
    images: dict[str, Any] | None = Field(
        description="per-image exits (taken, predicted) and latency on the sample images"
    )
    context: dict[str, Any] = Field(description="the agent's measurement context")
    measured_at: dt.datetime


class CorrectionRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": 2,
                    "scale": 1.27,
                    "offset_ms": 0.4,
                    "paths": 6,
                    "verifications": 3,
                    "created_at": "2026-11-25T09:03:00Z",
                }
            ]
        }
    )

    version: int
    scale: float
    offset_ms: float
    paths: int = Field(description="exit paths it was fitted on")
    verifications: int
    created_at: dt.datetime
