"""A configuration of a supernet (exits, thresholds, terminal) and its tailored model."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow


class Configuration(Base):
    """Id: sha256 of the canonical JSON of (supernet id, configuration)."""

    __tablename__ = "configurations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    supernet_id: Mapped[str] = mapped_column(ForeignKey("supernets.id", ondelete="CASCADE"))
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
