"""Supernets (validated bundles) and their ONNX parts, stored as content-addressed blobs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base, UTCDateTime, utcnow


class Supernet(Base):
    """One uploaded bundle; its id is the sha256 of the bundle file (also its blob)."""

    __tablename__ = "supernets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the weights
    num_classes: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    stats_sha256: Mapped[str] = mapped_column(String(64))
    costs_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id", ondelete="SET NULL"))

    parts: Mapped[list[SupernetPart]] = relationship(
        back_populates="supernet",
        cascade="all, delete-orphan",
        lazy="raise",
        order_by="SupernetPart.name",
    )


class SupernetPart(Base):
    """One ONNX part of a supernet (``segment/layer1.0``, ``head/final``, ...)."""

    __tablename__ = "supernet_parts"

    supernet_id: Mapped[str] = mapped_column(
        ForeignKey("supernets.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(400), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)

    supernet: Mapped[Supernet] = relationship(back_populates="parts", lazy="raise")
