"""Queries of searches: the workers' queue (claims and leases are conditional updates,
race-free; on PostgreSQL the rows being claimed are also locked, SKIP LOCKED)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.orm import Session

from service import db
from service.devices.models import Device
from service.profiles.models import Profile
from service.searches.models import QUEUED, RUNNING, Search


def get(session: Session, search_id: int) -> Search | None:
    return session.get(Search, search_id)


def by_key(session: Session, key: str) -> Search | None:
    return session.scalars(select(Search).where(Search.key == key)).first()


def get_or_create(session: Session, values: Mapping[str, Any]) -> Search:
    """The search of ``values["key"]``, inserted (queued) unless it exists."""
    db.insert_missing(session, Search, values)
    search = by_key(session, values["key"])
    assert search is not None
    return search


def profile_costs(session: Session, profile_id: int) -> dict[str, Any]:
    """The cost table of a profile."""
    costs = session.scalar(select(Profile.costs).where(Profile.id == profile_id))
    assert costs is not None
    return dict(costs)


def _claimable(now: dt.datetime) -> ColumnElement[bool]:
    """Queued, or running under a lease that has expired (its worker died or hung); a
    running search without a lease (left by an older version) counts as expired."""
    return or_(
        Search.status == QUEUED,
        (Search.status == RUNNING)
        & (Search.lease_expires_at.is_(None) | (Search.lease_expires_at < now)),
    )


def _locking(session: Session, query: Select[Any]) -> Select[Any]:
    # PostgreSQL: rows another worker is claiming right now are passed over, not waited on
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def next_claimable(session: Session, now: dt.datetime, ripe_before: dt.datetime) -> Search | None:
    """The oldest search a worker may claim now: one queued before ``ripe_before`` (it has
    waited the batch window for companions), or one whose lease has expired."""
    query = (
        select(Search)
        .where(
            or_(
                (Search.status == QUEUED) & (Search.created_at <= ripe_before),
                (Search.status == RUNNING)
                & (Search.lease_expires_at.is_(None) | (Search.lease_expires_at < now)),
            )
        )
        .order_by(Search.id)
        .limit(1)
    )
    return session.scalars(_locking(session, query)).first()


def next_ripe(session: Session) -> dt.datetime | None:
    """When the oldest queued search was queued (None: none is)."""
    return session.scalar(select(func.min(Search.created_at)).where(Search.status == QUEUED))


def companions(session: Session, search: Search, limit: int) -> list[Search]:
    """Queued searches of the same supernet as ``search`` (of any age), oldest first: those
    with the same options (but the cost correction, which prices one table) can share its
    walk of the space."""
    query = (
        select(Search)
        .where(
            Search.supernet_id == search.supernet_id,
            Search.status == QUEUED,
            Search.id != search.id,
        )
        .order_by(Search.id)
    )
    mine = batch_options(search.options)
    rows = session.scalars(_locking(session, query)).all()
    return [row for row in rows if batch_options(row.options) == mine][:limit]


def batch_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options a fleet search must share: all but the cost correction."""
    return {k: v for k, v in options.items() if k != "correction"}


def claim(
    session: Session, search_id: int, owner: str, now: dt.datetime, until: dt.datetime
) -> bool:
    """Take ``search_id`` for ``owner`` until ``until`` if it is still claimable (a
    conditional update: of two workers racing for it, one wins)."""
    result = session.execute(
        update(Search)
        .where(Search.id == search_id, _claimable(now))
        .values(status=RUNNING, lease_owner=owner, lease_expires_at=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew(
    session: Session, ids: list[int], owner: str, now: dt.datetime, until: dt.datetime
) -> int:
    """Extend ``owner``'s lease on the searches ``ids`` it still holds; how many it holds."""
    result = session.execute(
        update(Search)
        .where(Search.id.in_(ids), Search.status == RUNNING, Search.lease_owner == owner)
        .values(lease_expires_at=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish(session: Session, search_id: int, owner: str, values: Mapping[str, Any]) -> bool:
    """Store a search's outcome if ``owner`` still holds it (False: its lease expired and
    another worker took the search over; that worker's outcome is the one stored)."""
    result = session.execute(
        update(Search)
        .where(Search.id == search_id, Search.status == RUNNING, Search.lease_owner == owner)
        .values(**values, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, ids: list[int], owner: str, now: dt.datetime) -> int:
    """Hand back searches ``owner`` holds but will not finish (it is stopping): queued
    again at once instead of after the lease."""
    result = session.execute(
        update(Search)
        .where(Search.id.in_(ids), Search.status == RUNNING, Search.lease_owner == owner)
        .values(status=QUEUED, lease_owner=None, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def latest_profile(session: Session, supernet_id: str, device_id: int) -> Profile | None:
    """The newest profile version of a supernet on a device."""
    return session.scalars(
        select(Profile)
        .where(Profile.supernet_id == supernet_id, Profile.device_id == device_id)
        .order_by(Profile.version.desc())
        .limit(1)
    ).first()


def latest_profile_id(session: Session, supernet_id: str, device_name: str) -> int | None:
    """The id of the newest profile of a supernet on a device (by name), in one query."""
    return session.scalar(
        select(Profile.id)
        .join(Device, Device.id == Profile.device_id)
        .where(Profile.supernet_id == supernet_id, Device.name == device_name)
        .order_by(Profile.version.desc())
        .limit(1)
    )
