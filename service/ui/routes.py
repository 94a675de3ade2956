"""The dashboard under ``/ui``: server-rendered pages on the domains' service functions.

Pages need a session (:mod:`service.ui.session`), started by logging in with an API token;
without one they redirect to ``/ui/login``. Forms that change state carry a CSRF token
(:mod:`service.ui.csrf`). Roles are the API's: agents get no dashboard, engineers see and
query, admins also manage tokens. Errors are pages, not JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.auth import repository as tokens_repository
from service.auth import service as tokens
from service.auth.schemas import TokenCreate
from service.configurations import service as configurations
from service.configurations.service import get_or_create
from service.db import after_commit, transaction, utcnow
from service.deps import BlobsDep, SessionDep
from service.errors import AppError, Forbidden, NotFound, Unauthorized
from service.searches import repository as searches_repository
from service.searches import service as searches
from service.searches.schemas import SearchRequest
from service.supernets.service import open_blob
from service.ui import csrf, pages
from service.ui import session as ui_session
from service.ui.session import UiSession

HERE = Path(__file__).parent
# no inline script or style anywhere: data for the scripts travels as JSON script blocks
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No valid session: the page redirects to the login form."""


def _ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = int(((now or utcnow()) - value).total_seconds())
    if seconds < 0:
        return "in " + _span(-seconds)
    return _span(seconds) + " ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped unless marked safe (none is)
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ago"] = _ago
    env.filters["when"] = lambda v: "" if v is None else v.strftime("%Y-%m-%d %H:%M:%S UTC")
    env.filters["num"] = lambda v, digits=3: "" if v is None else f"{float(v):.{digits}f}"
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * float(v):.1f} %"
    return env


templates = Jinja2Templates(env=_environment())


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A page, with the session's principal and CSRF token when there is one."""
    ui: UiSession | None = getattr(request.state, "ui", None)
    base = {"me": ui.principal if ui else None, "csrf": ui.csrf if ui else ""}
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    return response


class UiRoute(APIRoute):
    """Dashboard routes: security headers on every answer, failures as pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await handle(request)
            except LoginRequired:
                response = RedirectResponse("/ui/login", status_code=303)
            except AppError as exc:
                response = render(
                    request,
                    "error.html",
                    {"status": exc.status_code, "message": exc.message},
                    exc.status_code,
                )
            except RequestValidationError as exc:
                message = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
                )
                response = render(request, "error.html", {"status": 422, "message": message}, 422)
            response.headers.update(SECURITY_HEADERS)
            return response

        return handler


def _session(request: Request, session: SessionDep) -> UiSession:
    ui = ui_session.current(request, session)
    if ui is None:
        raise LoginRequired
    if ui.principal.role == "agent":
        raise Forbidden("agent tokens have no dashboard")
    request.state.ui = ui
    return ui


Ui = Annotated[UiSession, Depends(_session)]


def _admin(ui: Ui) -> UiSession:
    ui.principal.require("admin")
    return ui


Admin = Annotated[UiSession, Depends(_admin)]
router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


# ---------------------------------------------------------------- login and logout
@router.get("/login")
def login_form(request: Request, session: SessionDep) -> Response:
    """The login form (a logged-in browser goes to the overview)."""
    if ui_session.current(request, session) is not None:
        return RedirectResponse("/ui/", status_code=303)
    return _login_page(request)


def _login_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    token = csrf.login_token(request)
    response = render(request, "login.html", {"error": error, "login_csrf": token}, status_code)
    csrf.set_login_cookie(request, response, token)
    return response


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Check a token as the API does and start a session; the token itself is not kept."""
    csrf.check_login(request, csrf_token)
    try:
        principal = tokens.authenticate(session, request.app.state.settings, token.strip())
    except Unauthorized as exc:
        return _login_page(request, f"Not logged in: {exc.message}.", 401)
    if principal.role == "agent":
        return _login_page(request, "Agent tokens have no dashboard: use an engineer token.", 403)
    response = RedirectResponse("/ui/", status_code=303)
    ui_session.start(request, response, principal)
    response.delete_cookie(csrf.LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(
    request: Request, ui: Ui, csrf_token: Annotated[str, Form(max_length=256)] = ""
) -> Response:
    """End the session."""
    csrf.check(request, ui.csrf, csrf_token)
    response = RedirectResponse("/ui/login", status_code=303)
    ui_session.end(request, response)
    return response


# ---------------------------------------------------------------- pages
@router.get("/")
def overview(request: Request, session: SessionDep, _ui: Ui) -> Response:
    """Supernets, devices and their agents, the job queue, recent searches."""
    context = {"supernets": pages.supernet_lines(session), **pages.live(session, utcnow())}
    return render(request, "overview.html", context)


@router.get("/fragments/live")
def overview_live(request: Request, session: SessionDep, _ui: Ui) -> Response:
    """The overview's changing numbers, fetched every few seconds by the page."""
    return render(request, "_live.html", pages.live(session, utcnow()))


@router.get("/supernets/{supernet_id}")
def supernet(
    request: Request, supernet_id: str, session: SessionDep, blobs: BlobsDep, _ui: Ui
) -> Response:
    """A supernet's fronts on every profiled device, on one plot."""
    fronts = request.app.state.fronts
    return render(
        request, "supernet.html", pages.supernet_page(session, blobs, fronts, supernet_id)
    )


@router.post("/supernets/{supernet_id}/fronts")
def compute_front(
    request: Request,
    supernet_id: str,
    session: SessionDep,
    ui: Ui,
    device: Annotated[str, Form(max_length=128)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Queue the search of a device's front at the default options (as a first
    ``POST /v1/search`` would); the page shows it once the worker has computed it."""
    csrf.check(request, ui.csrf, csrf_token)
    try:
        data = SearchRequest(supernet_id=supernet_id, device=device, objective="pareto")
    except ValidationError:
        raise NotFound(f"no supernet {supernet_id!r} with a device {device!r}") from None
    searches.request_search(session, data, ui.principal)
    after_commit(session, request.app.state.search_worker.notify)
    return RedirectResponse(f"/ui/supernets/{supernet_id}", status_code=303)


@router.get("/supernets/{supernet_id}/pick")
def pick(
    request: Request,
    supernet_id: str,
    session: SessionDep,
    blobs: BlobsDep,
    ui: Ui,
    device: Annotated[str, Query(max_length=128)],
    budget_ms: Annotated[float, Query(gt=0, allow_inf_nan=False)],
) -> Response:
    """The best configuration of the device's front under a latency budget, answered as
    ``POST /v1/search`` answers it (and stored the same way); redirects to its page."""
    ui.principal.require("engineer")
    try:
        data = SearchRequest(
            supernet_id=supernet_id, device=device, objective="max-accuracy", budget_ms=budget_ms
        )
    except ValidationError as exc:
        raise NotFound(f"no supernet {supernet_id!r} with a device {device!r}") from exc
    # the profile and cost correction POST /v1/search would resolve now, so the same front
    profile_id, correction = searches.latest_resolution(session, supernet_id, device)
    search = None
    if profile_id is not None:
        options = searches.priced(data.options(), correction)
        key = searches.search_key(supernet_id, profile_id, options)
        search = searches_repository.by_key(session, key)
    if search is None or search.front_sha256 is None:
        raise NotFound(f"no front of this supernet on {device!r} yet: run a search first")
    done = searches.DoneSearch.of(search)
    loaded = request.app.state.fronts.get(blobs, done.front_sha256)
    answer, metrics = searches.compose(loaded, done, data)
    # stored in a unit of work of its own, as the API's query path stores it
    with transaction(request.app.state.sessionmaker) as write:
        get_or_create(write, supernet_id, answer.configuration, metrics)
    return RedirectResponse(f"/ui/configurations/{answer.configuration_id}", status_code=303)


@router.get("/configurations/{config_id}")
def configuration(request: Request, config_id: str, session: SessionDep, _ui: Ui) -> Response:
    """A configuration: exits, terminal, predicted metrics, exit fractions, verifications."""
    return render(request, "configuration.html", pages.configuration_page(session, config_id))


@router.get("/configurations/{config_id}/model.onnx")
def configuration_model(config_id: str, session: SessionDep, blobs: BlobsDep, _ui: Ui) -> Response:
    """The tailored ONNX model, as ``GET /v1/configurations/{id}/model.onnx`` serves it."""
    sha = configurations.model_blob(session, blobs, config_id)
    chunks, size = open_blob(blobs, sha, f"model of configuration {config_id}")
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": 'attachment; filename="model.onnx"',
        },
    )


@router.get("/devices/{name}")
def device(
    request: Request,
    name: str,
    session: SessionDep,
    _ui: Ui,
    profile: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """A device: profile versions and context, part timings, wholes, jobs."""
    return render(request, "device.html", pages.device_page(session, name, profile))


# ---------------------------------------------------------------- tokens (admins)
def _tokens_page(
    request: Request,
    session: Session,
    created: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    rows = tokens_repository.list_tokens(session, 1000, 0)
    now = utcnow()
    context = {"tokens": rows, "now": now, "created": created, "error": error}
    return render(request, "tokens.html", context, status)


@router.get("/tokens")
def tokens_page(request: Request, session: SessionDep, _ui: Admin) -> Response:
    """Tokens (no secrets), a form to create one, revoke buttons."""
    return _tokens_page(request, session)


@router.post("/tokens")
def create_token(
    request: Request,
    session: SessionDep,
    ui: Admin,
    name: Annotated[str, Form(max_length=100)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    expires_days: Annotated[str, Form(max_length=8)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Create a token and show its secret this once."""
    csrf.check(request, ui.csrf, csrf_token)
    try:
        days = float(expires_days) if expires_days.strip() else None
        expires = utcnow() + dt.timedelta(days=days) if days is not None else None
        data = TokenCreate.model_validate({"name": name, "role": role, "expires_at": expires})
    except (ValueError, OverflowError) as exc:
        message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        return _tokens_page(request, session, error=f"Not created: {message}", status=422)
    row, secret = tokens.create_token(session, data, ui.principal)
    return _tokens_page(request, session, created={"row": row, "secret": secret}, status=201)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    request: Request,
    token_id: int,
    session: SessionDep,
    ui: Admin,
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Revoke a token (its API calls and dashboard sessions end)."""
    csrf.check(request, ui.csrf, csrf_token)
    tokens.revoke_token(session, token_id)
    after_commit(session, request.app.state.principals.clear)
    return RedirectResponse("/ui/tokens", status_code=303)


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: its pages and its static files."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
