"""``/v1/tokens``: create (shown once), list and revoke API tokens (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status

from service.auth import repository, service
from service.auth.deps import AdminPrincipal
from service.auth.schemas import TokenCreate, TokenCreated, TokenList, TokenRead
from service.db import after_commit
from service.deps import SessionDep
from service.errors import ErrorResponse

router = APIRouter(
    prefix="/v1/tokens",
    tags=["tokens"],
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
def create_token(data: TokenCreate, session: SessionDep, admin: AdminPrincipal) -> TokenCreated:
    """Create a token; the response holds the secret, which is not stored and not shown again."""
    row, secret = service.create_token(session, data, admin)
    return TokenCreated.model_validate(
        {**TokenRead.model_validate(row).model_dump(), "token": secret}
    )


@router.get("", response_model=TokenList)
def list_tokens(
    session: SessionDep,
    _admin: AdminPrincipal,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> TokenList:
    """All tokens, without their secrets."""
    rows = repository.list_tokens(session, limit, offset)
    return TokenList(items=[TokenRead.model_validate(r) for r in rows])


@router.delete("/{token_id}", response_model=TokenRead, responses={404: {"model": ErrorResponse}})
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=2**62)],
    session: SessionDep,
    request: Request,
    _admin: AdminPrincipal,
) -> TokenRead:
    """Revoke a token: at once on this server process, within ``MESS_AUTH_CACHE_SECONDS``
    on the others."""
    revoked = TokenRead.model_validate(service.revoke_token(session, token_id))
    # once committed, so that no principal is re-read (and cached) from the old row
    after_commit(session, request.app.state.principals.clear)
    return revoked
