"""Profile request and response bodies."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from service.devices.schemas import DEVICE_NAME
from service.verifications.schemas import CorrectionRead

Timing = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_DIGEST = "9f2c1e0b7d5a4c3e8f6a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6"
_COSTS_EXAMPLE: dict[str, Any] = {
    "format": "mess-costs",
    "version": 1,
    "unit": "ms",
    "statistic": "median",
    "device": {"name": "pixel-7-lab-1"},
    "segments": {"layer1.0": 3.1, "final": 9.8},
    "heads": {"layer1.0/crm1-b0-rdi0-fcn": 0.9, "final": 2.2},
    "policy": {"layer1.0/crm1-b0-rdi0-fcn": 0.1},
}


class ProfileCreate(BaseModel):
    """A ``mess-costs`` v1 table in ms for a supernet on a device, with its context."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "supernet_id": _DIGEST,
                    "device": "pixel-7-lab-1",
                    "costs": _COSTS_EXAMPLE,
                    "context": {"threads": 4, "warmup": 10, "runs": 64, "onnxruntime": "1.20.1"},
                    "raw": {"segment/layer1.0": [3.0, 3.1, 3.2]},
                }
            ]
        },
    )

    supernet_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    device: str = Field(pattern=DEVICE_NAME, description="a registered device's name")
    costs: dict[str, Any] = Field(description="the mess-costs v1 table, unit ms")
    context: dict[str, Any] | None = Field(
        default=None, description="measurement context: threads, warm-up, runs, versions, ..."
    )
    raw: dict[str, list[Timing]] | None = Field(
        default=None, description="raw timings in ms per part name"
    )


class ProfileSummary(BaseModel):
    """One line of the profile list."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 12,
                    "supernet_id": _DIGEST,
                    "device": "pi-5",
                    "version": 2,
                    "unit": "ms",
                    "statistic": "median",
                    "digest": "9b2e" + "0" * 60,
                    "has_raw": True,
                    "created_at": "2026-11-25T09:00:00Z",
                }
            ]
        }
    )

    id: int
    supernet_id: str
    device: str
    version: int
    unit: str
    statistic: str
    digest: str
    has_raw: bool
    created_at: dt.datetime


class ProfileRead(ProfileSummary):
    """A profile with its cost table and context (raw timings: ``/raw``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "supernet_id": _DIGEST,
                    "device": "pixel-7-lab-1",
                    "version": 1,
                    "unit": "ms",
                    "statistic": "median",
                    "digest": _DIGEST,
                    "has_raw": True,
                    "created_at": "2026-01-01T00:00:00Z",
                    "costs": _COSTS_EXAMPLE,
                    "context": {"threads": 4},
                }
            ]
        }
    )

    costs: dict[str, Any]
    context: dict[str, Any] | None
    corrections: list[CorrectionRead] = Field(
        default_factory=list,
        description="the cost corrections learned from verifications on the device, oldest "
        "first; searches use the newest",
    )


class ProfileList(BaseModel):
    """Profiles, newest version first."""

    items: list[ProfileSummary]
