"""Typed FastAPI dependencies: settings, the session (which owns commit/rollback), the
blob store and the caller's principal with role checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.auth.service import Principal, authenticate
from service.blobs import BlobStore
from service.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="A token from POST /v1/tokens")


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session per request: committed when the route returns, rolled back on error."""
    with request.app.state.sessionmaker() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_blobs(request: Request) -> BlobStore:
    """The app's blob store."""
    blobs: BlobStore = request.app.state.blobs
    return blobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]


def get_principal(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` (401 when missing or unknown)."""
    return authenticate(session, settings, credentials.credentials if credentials else None)


def _role(role: str) -> object:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(role)
        return principal

    check.__name__ = f"require_{role}"
    return Depends(check)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
AgentPrincipal = Annotated[Principal, _role("agent")]
EngineerPrincipal = Annotated[Principal, _role("engineer")]
AdminPrincipal = Annotated[Principal, _role("admin")]
