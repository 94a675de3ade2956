"""Devices registered by profiling agents, keyed by a unique name."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow


class Device(Base):
    """A target device and the runtime it measures with."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    cpu: Mapped[str | None] = mapped_column(String(200))
    cores: Mapped[int | None] = mapped_column(Integer)
    memory: Mapped[int | None] = mapped_column(BigInteger)  # bytes
    os: Mapped[str | None] = mapped_column(String(200))
    python: Mapped[str | None] = mapped_column(String(50))
    runtime: Mapped[str | None] = mapped_column(String(100))
    runtime_version: Mapped[str | None] = mapped_column(String(50))
    providers: Mapped[list[str]] = mapped_column(JSON, default=list)
    threads: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    registered_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("tokens.id", ondelete="SET NULL")
    )
