"""Profile queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.devices.models import Device
from service.profiles.models import Profile


def get(session: Session, profile_id: int) -> tuple[Profile, str] | None:
    """A profile and its device's name."""
    stmt = select(Profile, Device.name).join(Device).where(Profile.id == profile_id)
    row = session.execute(stmt).one_or_none()
    return None if row is None else (row[0], row[1])


def find_digest(session: Session, supernet_id: str, device_id: int, digest: str) -> Profile | None:
    """The profile of (supernet, device) with that content digest."""
    stmt = select(Profile).where(
        Profile.supernet_id == supernet_id, Profile.device_id == device_id, Profile.digest == digest
    )
    return session.scalars(stmt).one_or_none()


def lock_versions(session: Session, device_id: int) -> None:
    """Serialise version allocation for a device until the transaction ends (PostgreSQL:
    ``SELECT ... FOR UPDATE`` on the device row; SQLite's write transactions are serial)."""
    session.execute(select(Device.id).where(Device.id == device_id).with_for_update())


def latest_version(session: Session, supernet_id: str, device_id: int) -> int:
    """The highest version of (supernet, device), 0 when none."""
    stmt = select(func.max(Profile.version)).where(
        Profile.supernet_id == supernet_id, Profile.device_id == device_id
    )
    return int(session.scalar(stmt) or 0)


def list_profiles(
    session: Session,
    supernet_id: str | None,
    device: str | None,
    limit: int,
    offset: int,
) -> Sequence[tuple[Profile, str]]:
    """Profiles with their device names, newest version first."""
    stmt = select(Profile, Device.name).join(Device)
    if supernet_id is not None:
        stmt = stmt.where(Profile.supernet_id == supernet_id)
    if device is not None:
        stmt = stmt.where(Device.name == device)
    stmt = stmt.order_by(Profile.supernet_id, Device.name, Profile.version.desc())
    return [(p, n) for p, n in session.execute(stmt.limit(limit).offset(offset)).all()]


def add(session: Session, profile: Profile) -> Profile:
    """Insert a profile (flushed)."""
    session.add(profile)
    session.flush()
    return profile
