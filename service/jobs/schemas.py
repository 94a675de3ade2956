"""Request and response bodies of the job routes."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.devices.schemas import DEVICE_NAME
from service.verifications.schemas import Verified

_LEASE = "9f1c2b3a4d5e6f708192a3b4c5d6e7f8"


class LeaseRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"device": "pi-5", "kinds": ["profile", "verify"]}]},
    )

    device: str = Field(pattern=DEVICE_NAME, description="the caller's registered device name")
    kinds: list[Literal["profile", "verify"]] = Field(
        default=["profile"],
        min_length=1,
        max_length=2,
        description="the job kinds the agent handles (agents that do not say: profile only)",
    )


class LeaseRef(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"lease_id": _LEASE}]}
    )

    lease_id: str = Field(min_length=1, max_length=64)


class FailRequest(LeaseRef):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"lease_id": _LEASE, "error": "InvalidGraph: ..."}]},
    )

    error: str = Field(max_length=10_000)


class WholeTiming(BaseModel):
    model_config = ConfigDict(extra="forbid")

    configuration: dict[str, Any]
    samples_ms: list[float] = Field(min_length=1, max_length=100_000)


class JobResult(LeaseRef):
    """Raw per-iteration timings of every part (ms) and the measurement context."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lease_id": _LEASE,
                    "timings": {"segment/layer1.0": [3.1, 3.0, 3.2], "head/final": [9.8, 9.9]},
                    "context": {
                        "runtime": "onnxruntime",
                        "runtime_version": "1.20.1",
                        "intra_op_threads": 4,
                        "tier": "quick",
                    },
                    "wholes": [],
                }
            ]
        },
    )

    timings: dict[str, list[float]] = Field(description="part name -> per-iteration ms")
    context: dict[str, Any] = Field(default_factory=dict)
    wholes: list[WholeTiming] = Field(default_factory=list, max_length=16)


class TimingsChunk(LeaseRef):
    """Some parts' raw timings (ms), uploaded while the job runs, under its lease."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lease_id": _LEASE,
                    "timings": {"segment/layer1.0": [3.1, 3.0, 3.2], "head/final": [9.8, 9.9]},
                    "context": {"runtime": "onnxruntime", "tier": "quick"},
                    "signatures": {"head/final": "a3" * 32},
                    "shared_from": {},
                }
            ]
        },
    )

    timings: dict[str, list[float]] = Field(
        min_length=1, max_length=10_000, description="part name -> per-iteration ms"
    )
    context: dict[str, Any] = Field(
        description="the measurement context (every chunk of a job and its result: the same)"
    )
    signatures: dict[str, str] = Field(
        default_factory=dict, description="part -> signature of its computation (when shared)"
    )
    shared_from: dict[str, str] = Field(
        default_factory=dict, description="part -> the part whose timed runs it shares"
    )

    @field_validator("timings")
    @classmethod
    def _samples(cls, timings: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, samples in timings.items():
            if not 1 <= len(samples) <= 100_000:
                raise ValueError(f"part {name!r} needs 1 to 100000 timings")
            if any(not (math.isfinite(t) and t >= 0) for t in samples):
                raise ValueError(f"timings of part {name!r} must be finite and non-negative")
        return timings

    @field_validator("signatures")
    @classmethod
    def _signatures(cls, signatures: dict[str, str]) -> dict[str, str]:
        bad = [n for n, s in signatures.items() if not re.fullmatch("[0-9a-f]{64}", s)]
        if bad:
            raise ValueError(f"the signature of part {bad[0]!r} is not 64 hex digits")
        return signatures


class ChunkResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"job_id": 7, "stored": 2, "unchanged": 0, "parts": 40, "missing": 586}]
        }
    )

    job_id: int
    stored: int = Field(description="parts this chunk added")
    unchanged: int = Field(description="parts it sent again with the values already stored")
    parts: int = Field(description="parts of the job with timings stored")
    missing: int = Field(description="parts of the supernet still without")


class StoredPart(BaseModel):
    samples_ms: list[float]
    signature: str | None
    shared_from: str | None


class StoredTimings(BaseModel):
    """A job's partial timings: what an agent resuming it does not time again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": 7,
                    "context": {"runtime": "onnxruntime", "tier": "quick"},
                    "device": {"cpu": "Cortex-A76", "cores": 4, "threads": 1},
                    "parts": {
                        "segment/layer1.0": {
                            "samples_ms": [3.1, 3.0, 3.2],
                            "signature": "a3" * 32,
                            "shared_from": None,
                        }
                    },
                    "discarded": [],
                }
            ]
        }
    )

    job_id: int
    context: dict[str, Any] | None = Field(description="their measurement context")
    device: dict[str, Any] | None = Field(
        description="the device's registered attributes when the first chunk came in"
    )
    parts: dict[str, StoredPart]
    discarded: list[dict[str, Any]] = Field(
        description="partial timings thrown away before: reason, parts, when"
    )


class DiscardRequest(LeaseRef):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"lease_id": _LEASE, "reason": "measurement context changed: tier"}]
        },
    )

    reason: str = Field(min_length=1, max_length=2000)


class DiscardResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"job_id": 7, "discarded": 40}]})

    job_id: int
    discarded: int = Field(description="parts whose timings were thrown away")


class Resume(BaseModel):
    """Parts of a leased profiling job timed under an earlier lease."""

    parts: list[str] = Field(description="time only the others")
    context: dict[str, Any] = Field(
        description="their measurement context: resume only under the same, else discard them "
        "(POST /v1/jobs/{id}/timings/discard) and start over"
    )


class VerificationResult(LeaseRef):
    """Per-run times (ms) of every exit path of the tailored model, timed whole."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lease_id": _LEASE,
                    "paths": [[18.0, 18.2, 18.1], [43.8, 44.0, 44.1]],
                    "context": {"runtime": "onnxruntime", "intra_op_threads": 1},
                    "images": None,
                }
            ]
        },
    )

    paths: list[list[float]] = Field(
        min_length=1,
        max_length=8,
        description="for each exit path (early exits in order, terminal last), every run's ms",
    )
    context: dict[str, Any] = Field(default_factory=dict)
    images: dict[str, Any] | None = Field(
        default=None,
        description="the model run on the bundle's sample images: per image the exit taken "
        "and its ms, and the fraction leaving where the statistics predict",
    )

    @field_validator("paths")
    @classmethod
    def _samples(cls, paths: list[list[float]]) -> list[list[float]]:
        for samples in paths:
            if not 1 <= len(samples) <= 100_000:
                raise ValueError("each path needs 1 to 100000 timings")
            if any(not (math.isfinite(t) and t >= 0) for t in samples):
                raise ValueError("timings must be finite and non-negative")
        return paths


_JOB: dict[str, Any] = {
    "id": 7,
    "kind": "profile",
    "configuration_id": None,
    "supernet_id": "3f1c" + "0" * 60,
    "device": "pi-5",
    "status": "leased",
    "tier": "quick",
    "attempts": 0,
    "max_attempts": 3,
    "lease_expires_at": "2026-11-25T09:01:00Z",
    "error": None,
    "profile_id": None,
    "created_at": "2026-11-25T09:00:00Z",
    "updated_at": "2026-11-25T09:00:00Z",
}


class JobRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_JOB]})

    id: int
    kind: str = Field(description="profile | verify")
    supernet_id: str
    configuration_id: str | None = Field(description="what a verify job verifies")
    device: str
    status: str = Field(description="queued | leased | done | failed")
    tier: str
    attempts: int
    max_attempts: int
    lease_expires_at: dt.datetime | None
    error: str | None
    profile_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


class LeasedJob(BaseModel):
    """What an agent needs to run a job."""

    id: int
    kind: str = Field(default="profile", description="profile | verify")
    supernet_id: str
    configuration_id: str | None = Field(
        default=None, description="verify: download /v1/configurations/{id}/model.onnx"
    )
    device: str
    lease_id: str
    lease_seconds: int
    lease_expires_at: dt.datetime
    tier: str
    configurations: list[dict[str, Any]]
    samples: bool = Field(
        default=False,
        description="verify: the bundle carries sample images (GET /v1/jobs/{id}/samples)",
    )
    exit_fractions: list[float] | None = Field(
        default=None,
        description="verify: the configuration's exit fractions (calibration split), by "
        "which the agent mixes the paths it times",
    )
    resume: Resume | None = Field(
        default=None, description="profile: parts timed already under an earlier lease"
    )


class LeaseResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job": {
                        "id": 7,
                        "kind": "profile",
                        "supernet_id": "3f1c" + "0" * 60,
                        "configuration_id": None,
                        "device": "pi-5",
                        "lease_id": _LEASE,
                        "lease_seconds": 60,
                        "lease_expires_at": "2026-11-25T09:01:00Z",
                        "tier": "quick",
                        "configurations": [{"exits": [], "terminal": "final"}],
                    }
                }
            ]
        }
    )

    job: LeasedJob


class JobList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_JOB]}]})

    items: list[JobRead]


class ResultResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job": {**_JOB, "status": "done", "lease_expires_at": None, "profile_id": 12},
                    "profile_id": 12,
                    "version": 2,
                }
            ]
        }
    )

    job: JobRead
    profile_id: int
    version: int


class VerificationResponse(BaseModel):
    """The finished job and the verification it stored."""

    job: JobRead
    verification: Verified
    correction_version: int | None = Field(
        description="the profile's cost correction after this result (null: none yet)"
    )
