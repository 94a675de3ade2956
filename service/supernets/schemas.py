"""Supernet response bodies (uploads are multipart, see the routes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict

_DIGEST = "9f2c1e0b7d5a4c3e8f6a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6"


class PositionRead(BaseModel):
    name: str
    channels: int
    stride: int


class ExitRead(BaseModel):
    id: str
    position: str
    position_index: int
    head: str


class PartRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    kind: str
    sha256: str
    size: int


class SupernetSummary(BaseModel):
    """One line of the supernet list."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _DIGEST,
                    "name": "deeplabv3-r50-cityscapes",
                    "digest": _DIGEST,
                    "num_classes": 19,
                    "num_positions": 16,
                    "num_exits": 576,
                    "size": 812345678,
                    "created_at": "2026-01-01T00:00:00Z",
                }
            ]
        }
    )

    id: str
    name: str
    digest: str
    num_classes: int
    num_positions: int
    num_exits: int
    size: int
    created_at: dt.datetime


class SupernetRead(SupernetSummary):
    """A supernet's manifest summary: classes, input, positions, exits and parts."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _DIGEST,
                    "name": "tiny",
                    "digest": _DIGEST,
                    "num_classes": 2,
                    "num_positions": 1,
                    "num_exits": 1,
                    "size": 4096,
                    "created_at": "2026-01-01T00:00:00Z",
                    "class_names": ["background", "road"],
                    "ignore_index": 255,
                    "input_size": [64, 64],
                    "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                    "source": {"model": "torchvision:resnet18"},
                    "positions": [{"name": "layer1.0", "channels": 64, "stride": 4}],
                    "exits": [
                        {
                            "id": "layer1.0/crm1-b0-rdi0-fcn",
                            "position": "layer1.0",
                            "position_index": 0,
                            "head": "crm1-b0-rdi0-fcn",
                        }
                    ],
                    "parts": [
                        {
                            "name": "head/final",
                            "kind": "final_head",
                            "sha256": _DIGEST,
                            "size": 1234,
                        }
                    ],
                    "stats_sha256": _DIGEST,
                    "costs_sha256": _DIGEST,
                }
            ]
        }
    )

    class_names: list[str]
    ignore_index: int
    input_size: list[int]
    normalization: dict[str, list[float]]
    source: dict[str, Any]
    positions: list[PositionRead]
    exits: list[ExitRead]
    parts: list[PartRead]
    stats_sha256: str
    costs_sha256: str


class SupernetList(BaseModel):
    """A page of supernets, newest first."""

    items: list[SupernetSummary]
