"""Queries of configurations."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.configurations.models import Configuration


def get(session: Session, config_id: str) -> Configuration | None:
    return session.get(Configuration, config_id)


def add(session: Session, row: Configuration) -> Configuration:
    session.add(row)
    session.flush()
    return row
