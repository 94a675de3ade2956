"""Typed FastAPI dependencies: settings, the session (which owns commit/rollback), the
blob store and the caller's principal with role checks.

The cheap ones are ``async``: FastAPI runs a sync dependency in the thread pool, a hop that
costs more than the dependency itself on the hot query path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.auth.service import Principal, PrincipalCache, authenticate
from service.blobs import BlobStore
from service.db import transaction
from service.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="A token from POST /v1/tokens")


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def get_session(request: Request) -> Iterator[Session]:
    """A session per request, the request's one unit of work: committed when the route
    returns, rolled back on error (:func:`service.db.transaction`).

    Requests that may write get write transactions (on SQLite: ``BEGIN IMMEDIATE``).
    """
    state = request.app.state
    maker = state.write_sessionmaker if request.method in _WRITES else state.sessionmaker
    with transaction(maker) as session:
        yield session


async def get_blobs(request: Request) -> BlobStore:
    """The app's blob store."""
    blobs: BlobStore = request.app.state.blobs
    return blobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": commit before the response is sent. The default ("request") commits
# after it, so a client could get a 2xx for a write that then failed or was lost to a crash.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` (401 when missing or unknown).

    Async with a short-lived cache (:class:`PrincipalCache`): a cache hit costs neither a
    database query nor a trip through the thread pool.
    """
    token = credentials.credentials if credentials else None
    cache: PrincipalCache = request.app.state.principals
    principal = cache.get(token)
    if principal is None:
        principal = await run_in_threadpool(_authenticate, request, token)
        assert token is not None  # authenticate raised otherwise
        cache.put(token, principal)
    return principal


def _authenticate(request: Request, token: str | None) -> Principal:
    with request.app.state.sessionmaker() as session:
        return authenticate(session, request.app.state.settings, token)


def _role(role: str) -> object:
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(role)
        return principal

    check.__name__ = f"require_{role}"
    return Depends(check)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
AgentPrincipal = Annotated[Principal, _role("agent")]
EngineerPrincipal = Annotated[Principal, _role("engineer")]
AdminPrincipal = Annotated[Principal, _role("admin")]
