"""Device request and response bodies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEVICE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


_DEVICE: dict[str, Any] = {
    "name": "pixel-7-lab-1",
    "cpu": "Google Tensor G2",
    "cores": 8,
    "memory": 8_000_000_000,
    "os": "Android 14",
    "python": "3.11.9",
    "runtime": "onnxruntime",
    "runtime_version": "1.20.1",
    "providers": ["CPUExecutionProvider"],
    "threads": 4,
}
_STAMP = "2026-11-25T09:00:00Z"


class DeviceCreate(BaseModel):
    """A device and its measurement environment, as an agent reports it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_DEVICE]})

    name: str = Field(pattern=DEVICE_NAME, description="unique: letters, digits, . _ -")
    cpu: str | None = Field(default=None, max_length=200)
    cores: int | None = Field(default=None, ge=1, le=100_000)
    memory: int | None = Field(default=None, ge=0, le=2**62, description="total memory in bytes")
    os: str | None = Field(default=None, max_length=200)
    python: str | None = Field(default=None, max_length=50)
    runtime: str | None = Field(default=None, max_length=100)
    runtime_version: str | None = Field(default=None, max_length=50)
    providers: list[str] = Field(default_factory=list, max_length=32)
    threads: int | None = Field(default=None, ge=1, le=100_000)


class DeviceRead(DeviceCreate):
    """A registered device."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    **_DEVICE,
                    "id": 4,
                    "created_at": _STAMP,
                    "updated_at": _STAMP,
                    "last_seen_at": _STAMP,
                }
            ]
        },
    )

    id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    last_seen_at: dt.datetime


class DeviceList(BaseModel):
    """A page of devices, by name."""

    items: list[DeviceRead]
