"""Token rules: creation, authentication, revocation and the first admin token.

Tokens are 32 random bytes (``mess_`` + urlsafe base64); only their sha256 is stored, which
is enough for random secrets of that length. ``MESS_ADMIN_TOKEN`` is compared in memory and
never written anywhere; without it, the first start creates an admin token, stores its
hash and writes the token to ``<data_dir>/admin-token`` (mode 0600).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cachetools import TLRUCache
from sqlalchemy.orm import Session

from service.auth import repository
from service.auth.models import Token
from service.auth.schemas import TokenCreate
from service.db import utcnow
from service.errors import Forbidden, NotFound, Unauthorized, Unprocessable
from service.settings import Settings

log = logging.getLogger(__name__)
RANK = {"agent": 0, "engineer": 1, "admin": 2}
ADMIN_TOKEN_FILE = "admin-token"


@dataclass(frozen=True)
class Principal:
    """Who is calling: token id (None for ``MESS_ADMIN_TOKEN``), name and role."""

    token_id: int | None
    name: str
    role: str
    expires_at: dt.datetime | None = field(default=None, compare=False)

    def require(self, role: str) -> None:
        """Raise :class:`Forbidden` unless this principal has ``role`` or a higher one."""
        if RANK[self.role] < RANK[role]:
            raise Forbidden(f"this route needs the {role} role or higher; the token is {self.role}")


def hash_token(token: str) -> str:
    """sha256 hex digest of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> str:
    """A fresh random token."""
    return "mess_" + secrets.token_urlsafe(32)


def authenticate(session: Session, settings: Settings, token: str | None) -> Principal:
    """The principal of a bearer token.

    Args:
        session: database session.
        settings: for ``MESS_ADMIN_TOKEN``.
        token: the bearer token, or None when the header is missing.

    Returns:
        The principal.

    Raises:
        Unauthorized: missing, unknown, revoked or expired token.
    """
    if not token:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    digest = hash_token(token)
    admin = settings.admin_token
    if admin is not None and hmac.compare_digest(digest, hash_token(admin.get_secret_value())):
        return Principal(None, "MESS_ADMIN_TOKEN", "admin")
    row = repository.get_by_hash(session, digest)
    if row is None:
        raise Unauthorized("unknown token")
    if not row.is_active(utcnow()):
        raise Unauthorized("token revoked or expired")
    return Principal(row.id, row.name, row.role, row.expires_at)


class PrincipalCache:
    """Principals of recently seen tokens, so that hot routes skip the token lookup.

    Keyed by the token's sha256 (the token itself is not kept); an entry lives
    ``MESS_AUTH_CACHE_SECONDS`` at most and never past the token's own expiry. A revocation
    clears this process's cache at once; other worker processes notice within the TTL.
    Only successes are cached: a forged token always reaches the database (and the rate
    limit). Not thread-safe: used from the event loop only.

    Args:
        ttl: seconds an entry lives at most; 0 disables the cache.
        size: most entries.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self, ttl: float, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl

        def until(_key: str, principal: Principal, now: float) -> float:
            if principal.expires_at is None:
                return now + ttl
            left = (principal.expires_at - utcnow()).total_seconds()
            return now + min(ttl, left)

        self.items: TLRUCache[str, Principal] = TLRUCache(maxsize=size, ttu=until, timer=clock)

    def get(self, token: str | None) -> Principal | None:
        if not token or self.ttl <= 0:
            return None
        return self.items.get(hash_token(token))

    def put(self, token: str, principal: Principal) -> None:
        if self.ttl > 0:
            self.items[hash_token(token)] = principal

    def clear(self) -> None:
        self.items.clear()


def create_token(session: Session, data: TokenCreate, creator: Principal) -> tuple[Token, str]:
    """Create a token.

    Args:
        session: database session.
        data: name, role, expiry.
        creator: the admin creating it.

    Returns:
        The row and the secret (shown once).

    Raises:
        Unprocessable: an expiry in the past or without a time zone.
    """
    creator.require("admin")
    if data.expires_at is not None:
        if data.expires_at.tzinfo is None:
            raise Unprocessable("expires_at needs a time zone, e.g. 2026-01-01T00:00:00Z")
        if data.expires_at <= utcnow():
            raise Unprocessable("expires_at is in the past")
    secret = new_secret()
    row = Token(
        name=data.name,
        role=data.role,
        token_hash=hash_token(secret),
        expires_at=data.expires_at,
        created_by_id=creator.token_id,
    )
    return repository.add(session, row), secret


def revoke_token(session: Session, token_id: int) -> Token:
    """Revoke a token (idempotent).

    Raises:
        NotFound: no such token.
    """
    row = repository.get(session, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def ensure_admin(session: Session, settings: Settings) -> Path | None:
    """Create the first admin token when none exists and ``MESS_ADMIN_TOKEN`` is unset.

    Args:
        session: database session (committed by the caller).
        settings: for ``admin_token`` and ``data_dir``.

    Returns:
        The file holding the new token, or None when nothing was created.
    """
    if settings.admin_token is not None or repository.any_active_admin(session):
        return None
    secret = new_secret()
    repository.add(
        session, Token(name="bootstrap-admin", role="admin", token_hash=hash_token(secret))
    )
    path = settings.data_dir / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    log.warning(
        "MESS_ADMIN_TOKEN is not set: created an admin token; it is in %s (readable only by "
        "this user). Create other tokens with it, then delete the file.",
        path.resolve(),
    )
    return path
