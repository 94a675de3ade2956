"""Typed FastAPI dependencies: settings, the session (which owns commit/rollback), the
blob store and the hooks. The caller's principal is :mod:`service.auth.deps`.

The cheap ones are ``async``: FastAPI runs a sync dependency in the thread pool, a hop that
costs more than the dependency itself on the hot query path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.blobs import BlobStore
from service.db import transaction
from service.hooks import Hooks
from service.settings import Settings


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


async def get_hooks(request: Request) -> Hooks:
    """What writes in one domain set off in another."""
    hooks: Hooks = request.app.state.hooks
    return hooks


async def get_blobs(request: Request) -> BlobStore:
    """The app's blob store."""
    blobs: BlobStore = request.app.state.blobs
    return blobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": commit before the response is sent. The default ("request") commits
# after it, so a client could get a 2xx for a write that then failed or was lost to a crash.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
HooksDep = Annotated[Hooks, Depends(get_hooks)]
