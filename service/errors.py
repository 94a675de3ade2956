"""Domain errors and the handlers that turn every failure into a JSON ``{"detail": ...}``.

Services raise :class:`AppError` subclasses; one handler maps them to their status code.
Validation errors become a 422 with a readable one-line ``detail`` (the pydantic list is kept
under ``errors``); anything unexpected is logged with its traceback and answered with a
plain 500 message, never the traceback itself.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorResponse(BaseModel):
    """Every error response body."""

    detail: str


class AppError(Exception):
    """A failure with a message meant for the client and its HTTP status code."""

    status_code = 500

    def __init__(self, message: str, status_code: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra  # more JSON fields of the response body
        if status_code is not None:
            self.status_code = status_code

    @property
    def headers(self) -> dict[str, str] | None:
        """Extra response headers (``WWW-Authenticate`` for 401)."""
        return None


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401

    @property
    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class PayloadTooLarge(AppError):
    status_code = 413


class Unprocessable(AppError):
    status_code = 422


class ServiceUnavailable(AppError):
    status_code = 503


def _json(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return _json(exc.status_code, exc.message, exc.headers, **exc.extra)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    parts = [f"{_loc(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors[:5]]
    detail = "; ".join(parts) + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else "")
    clean = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors
    ]
    return _json(422, detail or "invalid request", errors=clean)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _json(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(500, "internal server error")


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """The database is unreachable or busy: 503 with a message, the request may be retried."""
    log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
    reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
    return _json(503, f"database unavailable or busy, retry: {reason}", {"Retry-After": "1"})


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    """The database refused a value the request carried (PostgreSQL: a NUL byte in text, a
    number out of range), which SQLite may have stored: bad input, so 422, not a 500."""
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
    log.info("database refused a value on %s %s: %s", request.method, request.url.path, reason)
    return _json(422, f"a value of the request was refused by the database: {reason}")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``.

    Args:
        app: the application.
    """
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _unexpected)
