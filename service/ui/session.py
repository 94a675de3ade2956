"""The dashboard's session cookie: a signed reference to a token, never the token itself.

The cookie holds the token's id (or a fingerprint of ``MESS_ADMIN_TOKEN``), the session's
expiry and its CSRF secret, signed with ``itsdangerous``. Every request checks it against the
database again, so revoking a token ends its dashboard sessions at once. The signing key is
``MESS_UI_SECRET`` or a key generated at first start into ``<data_dir>/ui-secret`` (mode
0600), shared by the workers of one data folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from service.auth import repository
from service.auth.service import Principal, hash_token
from service.db import utcnow
from service.settings import Settings

COOKIE = "mess_ui"
PATH = "/ui"
MAX_AGE = 24 * 3600  # a session lasts a day at most, and never past its token's expiry
SECRET_FILE = "ui-secret"
_SALT = "mess-ui-session"


@dataclass(frozen=True)
class UiSession:
    """A logged-in dashboard session."""

    principal: Principal
    csrf: str  # the synchronizer token of this session's forms


def _secret(request: Request) -> str:
    state = request.app.state
    cached: str | None = getattr(state, "ui_secret", None)
    if cached is None:
        cached = load_secret(state.settings)
        state.ui_secret = cached
    return cached


def load_secret(settings: Settings) -> str:
    """``MESS_UI_SECRET``, or the key in the data folder (created once, by whichever process
    of a data folder comes first)."""
    if settings.ui_secret is not None:
        return settings.ui_secret.get_secret_value()
    path: Path = settings.data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    # written in full under a temporary name, then linked into place: a process starting at
    # the same moment reads either no file or the whole key, and the first link wins
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ui-secret-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_text().strip()


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(request), salt=_SALT)


def _admin_fingerprint(request: Request, settings: Settings) -> str | None:
    # binds a MESS_ADMIN_TOKEN session to that token: a new MESS_ADMIN_TOKEN ends it
    if settings.admin_token is None:
        return None
    digest = hash_token(settings.admin_token.get_secret_value())
    return hmac.new(_secret(request).encode(), digest.encode(), hashlib.sha256).hexdigest()


def start(request: Request, response: Response, principal: Principal) -> None:
    """Set the session cookie of ``principal`` on ``response``."""
    now = utcnow()
    expires = now + dt.timedelta(seconds=MAX_AGE)
    if principal.expires_at is not None:
        expires = min(expires, principal.expires_at)
    payload: dict[str, Any] = {
        "tid": principal.token_id,
        "exp": int(expires.timestamp()),
        "csrf": secrets.token_urlsafe(24),
    }
    if principal.token_id is None:
        payload["adm"] = _admin_fingerprint(request, request.app.state.settings)
    response.set_cookie(
        COOKIE,
        _serializer(request).dumps(payload),
        max_age=max(1, int((expires - now).total_seconds())),
        path=PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def end(request: Request, response: Response) -> None:
    """Clear the session cookie."""
    response.delete_cookie(
        COOKIE, path=PATH, secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )


def current(request: Request, session: Session) -> UiSession | None:
    """The request's session, or None when it has none that is still valid."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        payload = _serializer(request).loads(raw, max_age=MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(payload, dict) or int(payload.get("exp", 0)) <= utcnow().timestamp():
        return None
    csrf = str(payload.get("csrf", ""))
    token_id = payload.get("tid")
    if token_id is None:
        settings: Settings = request.app.state.settings
        expected = _admin_fingerprint(request, settings)
        if expected is None or not hmac.compare_digest(expected, str(payload.get("adm", ""))):
            return None
        return UiSession(Principal(None, "MESS_ADMIN_TOKEN", "admin"), csrf)
    row = repository.get(session, int(token_id))
    if row is None or not row.is_active(utcnow()):
        return None
    return UiSession(Principal(row.id, row.name, row.role, row.expires_at), csrf)
