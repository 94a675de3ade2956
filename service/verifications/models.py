"""A verification of one configuration on one device, and the cost corrections learned."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow


class Verification(Base):
    """Every exit path of a configuration's tailored model, timed whole on a device.

    ``profile_id`` is the profile version whose prediction it checks. ``paths_ms`` holds the
    mean of each path (early exits in configuration order, terminal last) and
    ``predicted_paths_ms`` what the profile's uncorrected table predicts for them: the pairs
    the device's cost correction is fitted on.
    """

    __tablename__ = "verifications"
    __table_args__ = (
        Index("ix_verifications_device_id_profile_id", "device_id", "profile_id"),
        Index("ix_verifications_configuration_id", "configuration_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    configuration_id: Mapped[str] = mapped_column(
        ForeignKey("configurations.id", ondelete="CASCADE")
    )
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    lease_id: Mapped[str] = mapped_column(String(64))
    paths_ms: Mapped[list[float]] = mapped_column(JSON)
    predicted_paths_ms: Mapped[list[float]] = mapped_column(JSON)
    exit_fractions: Mapped[list[float]] = mapped_column(JSON)
    expected_ms: Mapped[float] = mapped_column(Float)
    worst_ms: Mapped[float] = mapped_column(Float)
    p90_ms: Mapped[float] = mapped_column(Float)
    predicted_expected_ms: Mapped[float] = mapped_column(Float)
    correction_version: Mapped[int | None] = mapped_column(Integer)
    exit_agreement: Mapped[float | None] = mapped_column(Float)
    images: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    measured_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CostCorrection(Base):
    """Version ``version`` of the correction of one profile: a path the table prices at ``p``
    ms is predicted at ``scale * p + offset_ms`` (docs/DESIGN.md, "Service")."""

    __tablename__ = "cost_corrections"
    __table_args__ = (UniqueConstraint("profile_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    scale: Mapped[float] = mapped_column(Float)
    offset_ms: Mapped[float] = mapped_column(Float)
    paths: Mapped[int] = mapped_column(Integer)
    verifications: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
