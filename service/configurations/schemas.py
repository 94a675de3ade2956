"""Bodies of the configuration routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.verifications.schemas import Verified


class ConfigurationRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "c0de" + "0" * 60,
                    "supernet_id": "3f1c" + "0" * 60,
                    "configuration": {
                        "exits": [
                            {
                                "id": "layer2.0/crm1-b0-rdi0-fcn",
                                "pixel_threshold": 0.9,
                                "image_threshold": 0.75,
                            }
                        ],
                        "terminal": "final",
                    },
                    "metrics": {"miou": 0.458, "expected_cost": 28.1, "unit": "ms"},
                    "created_at": "2026-11-25T09:00:00Z",
                }
            ]
        }
    )

    id: str
    supernet_id: str
    configuration: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime
    verifications: list[Verified] = Field(
        default_factory=list, description="every time it was timed whole on a device, oldest first"
    )
