"""API tokens: only their sha256 is stored; the token itself is shown once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow

ROLES = ("admin", "engineer", "agent")


class Token(Base):
    """A bearer token with a role; revoked or expired tokens authenticate nobody."""

    __tablename__ = "tokens"
    __table_args__ = (CheckConstraint("role IN ('admin', 'engineer', 'agent')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id", ondelete="SET NULL"))

    def is_active(self, now: dt.datetime) -> bool:
        """Whether the token authenticates at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
