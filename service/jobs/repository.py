"""Queries of the job queue. Leasing is race-free on both backends: a conditional
``UPDATE ... WHERE status = 'queued'`` decides the winner (SQLite serialises writers), and on
PostgreSQL the candidate is also picked with ``FOR UPDATE SKIP LOCKED`` so concurrent agents
of a pool do not even contend for the same row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from service import db
from service.devices.models import Device
from service.jobs.models import LEASED, PROFILE, QUEUED, VERIFY, Job, JobTiming
from service.supernets.models import Supernet


def get(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def find(session: Session, supernet_id: str, device_id: int, subject: str = "") -> Job | None:
    """The profiling job of (supernet, device), or the verification job of ``subject``."""
    return session.scalars(
        select(Job).where(
            Job.supernet_id == supernet_id, Job.device_id == device_id, Job.subject == subject
        )
    ).first()


def list_jobs(
    session: Session,
    *,
    status: str | None,
    supernet_id: str | None,
    device_id: int | None,
    limit: int,
    offset: int,
) -> Sequence[tuple[Job, str]]:
    query = select(Job, Device.name).join(Device, Device.id == Job.device_id)
    if status:
        query = query.where(Job.status == status)
    if supernet_id:
        query = query.where(Job.supernet_id == supernet_id)
    if device_id is not None:
        query = query.where(Job.device_id == device_id)
    rows = session.execute(query.order_by(Job.id).limit(limit).offset(offset)).all()
    return [(job, name) for job, name in rows]


def supernet_ids(session: Session) -> Sequence[str]:
    return session.scalars(select(Supernet.id).order_by(Supernet.created_at)).all()


def device_ids(session: Session) -> Sequence[int]:
    return session.scalars(select(Device.id).order_by(Device.id)).all()


def expire_leases(session: Session, now: dt.datetime) -> Sequence[Job]:
    """Leased jobs whose lease ran out (locked on PostgreSQL)."""
    query = select(Job).where(Job.status == LEASED, Job.lease_expires_at < now)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).all()


def next_queued(
    session: Session, device_id: int, kinds: Sequence[str], skip: Sequence[int]
) -> int | None:
    query = select(Job.id).where(
        Job.device_id == device_id, Job.status == QUEUED, Job.kind.in_(kinds)
    )
    if skip:
        query = query.where(Job.id.not_in(skip))
    query = query.order_by(Job.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).first()


def claim(
    session: Session, job_id: int, lease_id: str, expires: dt.datetime, by: str, now: dt.datetime
) -> bool:
    """Lease ``job_id`` iff it is still queued; True when this call won it."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED)
        .values(
            status=LEASED,
            lease_id=lease_id,
            lease_expires_at=expires,
            leased_by=by,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def extend(session: Session, job_id: int, lease_id: str, expires: dt.datetime) -> bool:
    """Extend a lease iff it is still held under ``lease_id``."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == LEASED, Job.lease_id == lease_id)
        .values(lease_expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def insert_missing(
    session: Session, supernet_id: str, device_id: int, configurations: list[dict[str, Any]]
) -> bool:
    """Queue the job of (supernet, device) unless it exists; whether this call created it."""
    values = {
        "supernet_id": supernet_id,
        "device_id": device_id,
        "configurations": configurations,
    }
    return db.insert_missing(session, Job, values)


def insert_verification(
    session: Session, supernet_id: str, device_id: int, configuration_id: str, profile_id: int
) -> bool:
    """Queue the verification of a configuration on a device unless it exists."""
    values = {
        "kind": VERIFY,
        "subject": configuration_id,
        "configuration_id": configuration_id,
        "supernet_id": supernet_id,
        "device_id": device_id,
        "profile_id": profile_id,
        "configurations": [],
    }
    return db.insert_missing(session, Job, values)


def timings(
    session: Session, job_id: int, parts: Collection[str] | None = None
) -> dict[str, JobTiming]:
    """A job's stored partial timings by part (only ``parts``, when given), oldest first."""
    query = select(JobTiming).where(JobTiming.job_id == job_id)
    if parts is not None:
        query = query.where(JobTiming.part.in_(parts))
    return {row.part: row for row in session.scalars(query.order_by(JobTiming.id))}


def timed_parts(session: Session, job_id: int) -> Sequence[str]:
    return session.scalars(
        select(JobTiming.part).where(JobTiming.job_id == job_id).order_by(JobTiming.part)
    ).all()


def count_timings(session: Session, job_id: int) -> int:
    query = select(func.count()).select_from(JobTiming).where(JobTiming.job_id == job_id)
    return int(session.scalar(query) or 0)


def insert_timing(session: Session, values: dict[str, Any]) -> bool:
    """Store one part's timings unless the part has some; whether this call stored them."""
    return db.insert_missing(session, JobTiming, values)


def delete_timings(session: Session, job_id: int) -> int:
    result = session.execute(
        delete(JobTiming)
        .where(JobTiming.job_id == job_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def with_timings(session: Session, device_id: int) -> Sequence[Job]:
    """The device's profiling jobs holding partial timings."""
    return session.scalars(
        select(Job)
        .where(
            Job.device_id == device_id,
            Job.kind == PROFILE,
            Job.id.in_(select(JobTiming.job_id).distinct()),
        )
        .order_by(Job.id)
    ).all()
