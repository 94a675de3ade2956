"""``POST /v1/search`` and ``GET /v1/searches/{id}``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.auth.deps import CurrentPrincipal
from service.auth.service import Principal
from service.configurations.service import get_or_create
from service.db import transaction
from service.deps import SessionDep
from service.errors import ErrorResponse
from service.jobs.models import DONE as JOB_DONE
from service.jobs.models import FAILED as JOB_FAILED
from service.jobs.service import get_job
from service.searches import service
from service.searches.cache import QueryCache
from service.searches.finished import FinishedSearches
from service.searches.models import DONE, FAILED, Search
from service.searches.schemas import SearchAnswer, SearchPending, SearchRead, SearchRequest
from service.searches.verify import verified_answer
from service.settings import Settings

log = logging.getLogger(__name__)
# how often a request waiting for a search re-checks the database: a search finished by
# this process wakes it at once, one finished by another process within this long
RECHECK_SECONDS = 1.0
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
async def post_search(
    body: SearchRequest, request: Request, principal: CurrentPrincipal
) -> Response:
    """Best configuration for a budget on a device (or in GFLOPs), with the whole front.

    The first query of a (supernet, profile version, options) computes the exact front off
    the request path (202 if it takes longer than ``wait_seconds``: POST again); every later
    query is answered from the stored front: in memory, without touching the database, once
    this process has answered a query of the same search
    (:class:`~service.searches.cache.QueryCache`).
    """
    principal.require("engineer")
    if body.verify:
        return await _answer_verified(request, body, principal)
    state = request.app.state
    queries: QueryCache = state.queries
    hit = queries.search(body)
    if hit is not None and hit.stale:  # this caller owns the check, whichever path answers
        _check_later(request, body)
    loaded = state.fronts.peek(hit.done.front_sha256) if hit is not None else None
    if hit is not None and loaded is not None:
        # the hot path: everything in memory, answered on the event loop; the database sees
        # only the first answer of each configuration, and a check of the device's latest
        # profile every MESS_QUERY_CACHE_SECONDS (in the background)
        answer, metrics = service.compose(loaded, hit.done, body)
        if not queries.stored(answer.configuration_id):
            await run_in_threadpool(_store, request, hit.done.supernet_id, answer, metrics)
            queries.put_configuration(answer.configuration_id)
        return Response(answer.model_dump_json(), media_type="application/json")
    response, answered = await _answer(request, body, principal)
    if answered is not None:
        queries.put(body, answered[1], answered[0].configuration_id)
    return response


_checks: set[asyncio.Task[None]] = set()  # the event loop keeps only weak references


def _check_later(request: Request, body: SearchRequest) -> None:
    """Look up the device's latest profile off the request path and tell the cache."""
    queries: QueryCache = request.app.state.queries

    def latest() -> tuple[int | None, dict[str, Any] | None]:
        with request.app.state.sessionmaker() as session:
            return service.latest_resolution(session, body.supernet_id, body.device)

    async def check() -> None:
        try:
            profile_id, correction = await run_in_threadpool(latest)
        except Exception as exc:  # the database is away: keep answering, check again later
            queries.check_failed(body)
            log.warning("could not check the latest profile of %s: %s", body.device, exc)
            return
        queries.checked(body, profile_id, correction)

    task = asyncio.get_running_loop().create_task(check())
    _checks.add(task)
    task.add_done_callback(_checks.discard)


def _store(
    request: Request, supernet_id: str, answer: SearchAnswer, metrics: dict[str, Any]
) -> None:
    # no write transaction (on SQLite, BEGIN IMMEDIATE) needed: the insert is the first
    # statement, so there is no read snapshot to upgrade (see get_or_create)
    with transaction(request.app.state.sessionmaker) as session:
        get_or_create(session, supernet_id, answer.configuration, metrics)


async def _answer(
    request: Request, body: SearchRequest, principal: Principal
) -> tuple[Response, tuple[SearchAnswer, service.DoneSearch] | None]:
    """The database path: find or queue the search, wait for its front, answer."""
    state = request.app.state
    settings: Settings = state.settings
    search = await run_in_threadpool(_request, state, body, principal)
    if search.status not in (DONE, FAILED):
        state.search_worker.notify()
        wait = settings.search_wait_seconds if body.wait_seconds is None else body.wait_seconds
        search = await _wait(state, search, wait)
        if search.status not in (DONE, FAILED):
            pending = SearchPending(search_id=search.id, status=search.status)
            return JSONResponse(pending.model_dump(), status_code=202), None
    answered = await run_in_threadpool(_respond, state, search, body)
    return Response(answered[0].model_dump_json(), media_type="application/json"), answered


def _request(state: Any, body: SearchRequest, principal: Principal) -> Search:
    # a write transaction: it reads, then may queue the search (on SQLite a deferred
    # transaction cannot write once another writer committed after its first read)
    with transaction(state.write_sessionmaker) as session:
        return service.request_search(session, body, principal)


def _load(state: Any, search_id: int) -> Search:
    with transaction(state.sessionmaker) as session:
        return service.get_search(session, search_id)


def _respond(
    state: Any, search: Search, body: SearchRequest
) -> tuple[SearchAnswer, service.DoneSearch]:
    # storing the configuration is its first statement (as in _store)
    with transaction(state.sessionmaker) as session:
        return service.answer(session, state.blobs, state.fronts, search, body)


async def _wait(state: Any, search: Search, seconds: float) -> Search:
    """``search`` once finished, or as it is after ``seconds``.

    Woken by this process's worker (:class:`FinishedSearches`); a search finished by
    another process is seen by the re-check every ``RECHECK_SECONDS``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    finished: FinishedSearches = state.finished_searches
    with finished.watch(search.id) as event:
        while True:
            search = await run_in_threadpool(_load, state, search.id)
            left = deadline - loop.time()
            if search.status in (DONE, FAILED) or left <= 0:
                return search
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, RECHECK_SECONDS))
            event.clear()  # the next load sees what the notice announced


async def _answer_verified(request: Request, body: SearchRequest, principal: Principal) -> Response:
    """The database path of a verified query: rounds of search, verification job, wait
    (:mod:`service.searches.verify`), 202 once ``wait_seconds`` have passed."""
    state = request.app.state
    settings: Settings = state.settings
    loop = asyncio.get_running_loop()
    wait = settings.search_wait_seconds if body.wait_seconds is None else body.wait_seconds
    deadline = loop.time() + wait
    while True:
        search = await run_in_threadpool(_request, state, body, principal)
        if search.status not in (DONE, FAILED):
            state.search_worker.notify()
            search = await _wait(state, search, max(0.0, deadline - loop.time()))
            if search.status not in (DONE, FAILED):
                pending = SearchPending(search_id=search.id, status=search.status)
                return JSONResponse(pending.model_dump(), status_code=202)
        step = await run_in_threadpool(_verified_round, state, search, body)
        if isinstance(step, SearchAnswer):
            return Response(step.model_dump_json(), media_type="application/json")
        if step is not None and not await _wait_job(state, step, deadline - loop.time()):
            pending = SearchPending(search_id=search.id, status="verifying", job_id=step)
            return JSONResponse(pending.model_dump(), status_code=202)
        if loop.time() >= deadline:  # the correction moved: its new front comes next time
            pending = SearchPending(search_id=search.id, status="verifying")
            return JSONResponse(pending.model_dump(), status_code=202)


def _verified_round(state: Any, search: Search, body: SearchRequest) -> SearchAnswer | int | None:
    # a write transaction: it may store the configuration and queue its verification
    with transaction(state.write_sessionmaker) as session:
        return verified_answer(
            session, state.blobs, state.fronts, search, body, state.settings.verify_rounds
        )


def _job_finished(state: Any, job_id: int) -> bool:
    with transaction(state.sessionmaker) as session:
        return get_job(session, job_id).status in (JOB_DONE, JOB_FAILED)


async def _wait_job(state: Any, job_id: int, seconds: float) -> bool:
    """Whether verification job ``job_id`` finished within ``seconds`` (woken by this
    process's result route, re-checked every ``RECHECK_SECONDS`` for other processes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    finished: FinishedSearches = state.finished_jobs
    with finished.watch(job_id) as event:
        while True:
            if await run_in_threadpool(_job_finished, state, job_id):
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, RECHECK_SECONDS))
            event.clear()


@router.get("/v1/searches/{search_id}", response_model=SearchRead, responses=_ERRORS)
def get_search(
    search_id: Annotated[int, Path(ge=1, le=2**62)],
    session: SessionDep,
    principal: CurrentPrincipal,
) -> SearchRead:
    """A search's status, the size of its space and, when split, its shards' progress."""
    principal.require("engineer")
    return service.read(session, service.get_search(session, search_id))
