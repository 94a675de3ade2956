"""Device cost tables (``mess-costs`` v1 in ms) per supernet and device, versioned."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow


class Profile(Base):
    """Version ``version`` of the cost table of ``supernet`` measured on ``device``.

    ``digest`` is the sha256 of the canonical JSON of (costs, context, raw timings): the
    same upload again returns the existing version; anything different makes the next one.
    Raw timings can be large, so they live in the blob store (``raw_sha256``).
    """

    __tablename__ = "profiles"
    __table_args__ = (
        UniqueConstraint("supernet_id", "device_id", "version"),
        UniqueConstraint("supernet_id", "device_id", "digest"),
        Index("ix_profiles_device_id", "device_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    supernet_id: Mapped[str] = mapped_column(ForeignKey("supernets.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(16))
    statistic: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    costs: Mapped[dict[str, Any]] = mapped_column(JSON)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id", ondelete="SET NULL"))
