"""Queries of searches (the worker's claim is a conditional update, race-free)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import or_, select, update
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


def touch(session: Session, search_id: int, now: dt.datetime) -> None:
    """Mark a running search as alive."""
    session.execute(
        update(Search)
        .where(Search.id == search_id)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )


def profile_costs(session: Session, profile_id: int) -> dict[str, Any]:
    """The cost table of a profile."""
    costs = session.scalar(select(Profile.costs).where(Profile.id == profile_id))
    assert costs is not None
    return dict(costs)


def next_claimable(session: Session, stale_before: dt.datetime) -> int | None:
    """A queued search, or a running one whose worker stopped updating it (it died)."""
    query = (
        select(Search.id)
        .where(
            or_(
                Search.status == QUEUED,
                (Search.status == RUNNING) & (Search.updated_at < stale_before),
            )
        )
        .order_by(Search.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).first()


def claim(session: Session, search_id: int, now: dt.datetime, stale_before: dt.datetime) -> bool:
    result = session.execute(
        update(Search)
        .where(
            Search.id == search_id,
            or_(
                Search.status == QUEUED,
                (Search.status == RUNNING) & (Search.updated_at < stale_before),
            ),
        )
        .values(status=RUNNING, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


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
