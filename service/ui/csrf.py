"""CSRF protection of the dashboard's forms.

A logged-in session carries a synchronizer token (in its signed cookie); every form that
changes state posts it back as ``csrf_token``. The login form, which has no session yet,
uses a double-submit cookie instead. Both also refuse a request whose ``Origin`` is not the
dashboard's own. The cookies are ``SameSite=Strict`` as well; the tokens are what holds
against a same-site attacker (another port of the same host).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request, Response

from service.errors import Forbidden

LOGIN_COOKIE = "mess_ui_login"
FIELD = "csrf_token"


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every browser on same-origin posts
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def check(request: Request, expected: str, sent: str | None) -> None:
    """Refuse the request unless it carries ``expected`` and comes from this origin.

    Raises:
        Forbidden: a missing or wrong token, or a foreign ``Origin``.
    """
    if not _same_origin(request):
        raise Forbidden("cross-origin form post refused")
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise Forbidden("missing or invalid CSRF token: reload the page and try again")


def login_token(request: Request) -> str:
    """The login form's token: the one of the browser's login cookie, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)


def set_login_cookie(request: Request, response: Response, token: str) -> None:
    """Send the login form's token as a cookie too (double submit)."""
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path="/ui",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def check_login(request: Request, sent: str | None) -> None:
    """Check the login form's double-submitted token."""
    check(request, request.cookies.get(LOGIN_COOKIE, ""), sent)
