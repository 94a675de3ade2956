"""Queries of configurations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from service import db
from service.configurations.models import Configuration


def get(session: Session, config_id: str) -> Configuration | None:
    return session.get(Configuration, config_id)


def get_or_create(session: Session, values: Mapping[str, Any]) -> Configuration:
    """The configuration ``values["id"]``, inserted unless it exists (never updated)."""
    db.insert_missing(session, Configuration, values)
    row = get(session, values["id"])
    assert row is not None
    return row
