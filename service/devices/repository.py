"""Device queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import db
from service.devices.models import Device


def get_by_name(session: Session, name: str) -> Device | None:
    """The device called ``name``."""
    return session.scalars(select(Device).where(Device.name == name)).one_or_none()


def list_devices(session: Session, limit: int, offset: int) -> Sequence[Device]:
    """Devices by name."""
    return session.scalars(select(Device).order_by(Device.name).limit(limit).offset(offset)).all()


def insert_missing(session: Session, values: Mapping[str, Any]) -> bool:
    """Insert the device unless its name is taken; whether this call inserted it."""
    return db.insert_missing(session, Device, values)
