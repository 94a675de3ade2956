"""A job for the agents of one device: profile a supernet, or verify a configuration."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow

QUEUED, LEASED, DONE, FAILED = "queued", "leased", "done", "failed"
PROFILE, VERIFY = "profile", "verify"
KINDS = (PROFILE, VERIFY)


class Job(Base):
    """Status ``queued`` -> ``leased`` (with a lease id and expiry) -> ``done`` | ``failed``.

    An expired lease puts the job back in the queue (counted as an attempt); after
    ``max_attempts`` the job fails and keeps its last error.

    ``kind`` ``profile``: time every part of the supernet (one job per supernet and device,
    ``subject`` empty). ``verify``: time the tailored model of ``configuration_id`` whole,
    path by path (one job per configuration and device, ``subject`` its id); ``profile_id``
    is then the profile version whose prediction it checks. Agents lease only the kinds they
    say they handle.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("supernet_id", "device_id", "subject"),
        Index("ix_jobs_device_id_status", "device_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    supernet_id: Mapped[str] = mapped_column(ForeignKey("supernets.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default=PROFILE, server_default=PROFILE)
    subject: Mapped[str] = mapped_column(String(64), default="", server_default="")
    configuration_id: Mapped[str | None] = mapped_column(
        ForeignKey("configurations.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    tier: Mapped[str] = mapped_column(String(16), default="quick")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    leased_by: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    configurations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id", ondelete="SET NULL"))
    # the measurement context of its stored partial timings (JobTiming rows), and the
    # device's registered attributes when the first of them came in
    timings_context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timings_device: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # partial timings thrown away (another context, a changed device): reason, parts, when
    timings_discarded: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobTiming(Base):
    """One part's raw timings (ms), uploaded in a chunk while its profiling job runs.

    They outlive the lease that uploaded them: an agent leasing the job again times only the
    parts without a row, under the same measurement context (``Job.timings_context``), and
    the job's result is these rows plus the rest. Deleted when the job is done (the profile
    holds them then).
    """

    __tablename__ = "job_timings"
    __table_args__ = (UniqueConstraint("job_id", "part"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    part: Mapped[str] = mapped_column(String(400))
    samples_ms: Mapped[list[float]] = mapped_column(JSON)
    signature: Mapped[str | None] = mapped_column(String(64))  # of the part's computation
    shared_from: Mapped[str | None] = mapped_column(String(400))  # whose runs these are
    lease_id: Mapped[str] = mapped_column(String(64))  # the lease that uploaded it
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
