"""Token queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth.models import Token


def get_by_hash(session: Session, token_hash: str) -> Token | None:
    """The token whose sha256 is ``token_hash``."""
    return session.scalars(select(Token).where(Token.token_hash == token_hash)).one_or_none()


def get(session: Session, token_id: int) -> Token | None:
    """The token with id ``token_id``."""
    return session.get(Token, token_id)


def list_tokens(session: Session, limit: int, offset: int) -> Sequence[Token]:
    """Tokens, oldest first."""
    return session.scalars(select(Token).order_by(Token.id).limit(limit).offset(offset)).all()


def any_active_admin(session: Session) -> bool:
    """Whether some admin token has not been revoked (expiry is checked by the caller)."""
    stmt = select(Token.id).where(Token.role == "admin", Token.revoked_at.is_(None)).limit(1)
    return session.scalars(stmt).first() is not None


def add(session: Session, token: Token) -> Token:
    """Insert ``token`` (flushed, so it has an id)."""
    session.add(token)
    session.flush()
    return token
