"""Bodies of the configuration routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel


class ConfigurationRead(BaseModel):
    id: str
    supernet_id: str
    configuration: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime
