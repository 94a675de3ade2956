"""Supernet queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from service import db
from service.supernets.models import Supernet, SupernetPart


def get(session: Session, supernet_id: str, *, with_parts: bool = False) -> Supernet | None:
    """The supernet ``supernet_id`` (with its parts loaded on request)."""
    stmt = select(Supernet).where(Supernet.id == supernet_id)
    if with_parts:
        stmt = stmt.options(selectinload(Supernet.parts))
    return session.scalars(stmt).one_or_none()


def exists(session: Session, supernet_id: str) -> bool:
    """Whether the supernet is stored."""
    return (
        session.scalars(select(Supernet.id).where(Supernet.id == supernet_id)).first() is not None
    )


def list_supernets(
    session: Session, limit: int, offset: int, name: str | None = None
) -> Sequence[Supernet]:
    """Supernets, newest first, optionally with one name."""
    stmt = select(Supernet).order_by(Supernet.created_at.desc(), Supernet.id)
    if name is not None:
        stmt = stmt.where(Supernet.name == name)
    return session.scalars(stmt.limit(limit).offset(offset)).all()


def get_part(session: Session, supernet_id: str, name: str) -> SupernetPart | None:
    """One part of a supernet."""
    return session.get(SupernetPart, (supernet_id, name))


def insert_missing(
    session: Session, values: Mapping[str, Any], parts: Sequence[SupernetPart]
) -> bool:
    """Insert a supernet and its parts unless its id is taken (flushed); whether this call
    inserted it."""
    if not db.insert_missing(session, Supernet, values):
        return False
    session.add_all(parts)
    session.flush()
    return True
