"""The caller's principal as typed FastAPI dependencies, with role checks.

Async, like the other cheap dependencies: FastAPI runs a sync dependency in the thread
pool, a hop that costs more than the dependency itself on the hot query path."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.auth.service import Principal, PrincipalCache, authenticate

_bearer = HTTPBearer(auto_error=False, description="A token from POST /v1/tokens")


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
