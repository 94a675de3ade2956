"""``POST /v1/search`` and ``GET /v1/searches/{id}``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.deps import BlobsDep, CurrentPrincipal, SessionDep, SettingsDep
from service.errors import ErrorResponse
from service.searches import service
from service.searches.models import DONE, FAILED
from service.searches.schemas import SearchAnswer, SearchPending, SearchRead, SearchRequest

router = APIRouter(tags=["searches"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse, "description": "unknown supernet/device, or no profile yet"},
    422: {
        "model": ErrorResponse,
        "description": "invalid fields, or no feasible configuration "
        "(the body names the closest feasible alternatives)",
    },
}


@router.post(
    "/v1/search",
    response_model=SearchAnswer,
    responses={**_ERRORS, 202: {"model": SearchPending, "description": "front being computed"}},
)
def post_search(
    body: SearchRequest,
    request: Request,
    session: SessionDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    principal: CurrentPrincipal,
) -> SearchAnswer | JSONResponse:
    """Best configuration for a budget on a device (or in GFLOPs), with the whole front.

    The first query of a (supernet, profile version, options) computes the exact front off
    the request path (202 if it takes longer than ``wait_seconds``: POST again); every later
    query is answered from the stored front.
    """
    search = service.request_search(session, body, principal)
    wait = settings.search_wait_seconds if body.wait_seconds is None else body.wait_seconds
    deadline = time.monotonic() + wait
    if search.status not in (DONE, FAILED):
        request.app.state.search_worker.notify()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            session.refresh(search)
            session.commit()  # end the read transaction: SQLite writers wait for readers
            if search.status in (DONE, FAILED):
                break
    if search.status not in (DONE, FAILED):
        pending = SearchPending(search_id=search.id, status=search.status)
        return JSONResponse(pending.model_dump(), status_code=202)
    return service.answer(session, blobs, request.app.state.fronts, search, body)


@router.get("/v1/searches/{search_id}", response_model=SearchRead, responses=_ERRORS)
def get_search(search_id: int, session: SessionDep, principal: CurrentPrincipal) -> SearchRead:
    """A search's status and the size of its space."""
    principal.require("engineer")
    return service.read(service.get_search(session, search_id))
