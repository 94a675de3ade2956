"""The FastAPI application factory.

``create_app(settings)`` wires settings, error handlers, middleware (metrics, body limit)
and the domain routers; the lifespan creates the engine, applies Alembic migrations
(``upgrade head``), opens the blob store and makes sure an admin token exists. Nothing
connects to anything at import time. Run it with ``mess serve`` or
``uvicorn service.app:create_app --factory``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from mess import __version__
from service.auth.deps import get_principal
from service.auth.routes import router as tokens_router
from service.auth.service import PrincipalCache, ensure_admin
from service.blobs import make_blob_store
from service.configurations.routes import router as configurations_router
from service.db import make_engine, make_sessionmaker, transaction, upgrade
from service.devices.routes import router as devices_router
from service.errors import ErrorResponse, install_error_handlers
from service.hooks import Hooks
from service.jobs import service as jobs
from service.jobs.routes import router as jobs_router
from service.metrics import Metrics, MetricsMiddleware
from service.profiles.routes import router as profiles_router
from service.ratelimit import RateLimitMiddleware
from service.searches.cache import QueryCache
from service.searches.finished import FinishedSearches
from service.searches.routes import router as searches_router
from service.searches.service import FrontCache
from service.searches.worker import SearchWorker
from service.settings import Settings
from service.supernets.routes import router as supernets_router
from service.ui.routes import install as install_ui
from service.uploads import BodyLimitMiddleware, sweep_scratch

log = logging.getLogger(__name__)

DESCRIPTION = """\
Stores MESS supernets (uploaded as `mess-bundle` files), device registrations and device
cost tables ("profiles"). Every route but `/healthz` needs `Authorization: Bearer <token>`;
roles: admin > engineer > agent (`/metrics` takes any valid token). Admin: `MESS_ADMIN_TOKEN`;
when it is unset, the first start creates an admin token, stores only its hash and writes the
token to `<MESS_DATA_DIR>/admin-token` (mode 0600), logging that path once.
"""


def prepare(settings: Settings) -> None:
    """Create the data folder, migrate the database to head and make sure an admin exists.

    Idempotent, and safe when several processes start together (migrations take a lock).
    ``mess serve --workers N`` runs it once before forking anyway, so that without
    ``MESS_ADMIN_TOKEN`` one admin token is generated, not one per worker.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            ensure_admin(session, settings)
    finally:
        engine.dispose()


def _startup(app: FastAPI, settings: Settings) -> None:
    prepare(settings)
    sweep_scratch(settings.data_dir / "tmp", settings.data_dir / "blobs" / "tmp")
    engine = make_engine(settings.db_url)
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.write_sessionmaker = make_sessionmaker(engine, write=True)
    app.state.blobs = make_blob_store(settings)
    app.state.fronts = FrontCache()
    app.state.queries = QueryCache(settings.query_cache_seconds)
    app.state.finished_searches = FinishedSearches()
    app.state.finished_jobs = FinishedSearches()  # verification jobs, by job id
    app.state.search_worker = SearchWorker(
        app.state.write_sessionmaker,
        app.state.blobs,
        settings.search_workers if settings.embedded_worker else 0,
        on_finished=app.state.finished_searches.notify,
        lease_seconds=settings.search_lease_seconds,
        batch_window=settings.search_batch_window,
        search_threads=settings.search_threads,
        shards=settings.search_shards,
        shard_min_configs=settings.search_shard_min_configs,
    )
    app.state.search_worker.start()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: configuration; default: read from ``MESS_*`` environment variables.

    Returns:
        The FastAPI application (resources are opened by its lifespan).
    """
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("service").setLevel(settings.log_level.upper())
        await run_in_threadpool(_startup, app, settings)
        try:
            yield
        finally:
            app.state.search_worker.stop()
            app.state.engine.dispose()

    app = FastAPI(
        title="MESS service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    # a new runtime version or thread setting makes new measurements (a new profile version)
    app.state.hooks = Hooks(
        supernet_stored=jobs.ensure_for_supernet, device_registered=jobs.ensure_for_device
    )
    app.state.principals = PrincipalCache(settings.auth_cache_seconds)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    routers = (
        tokens_router,
        supernets_router,
        devices_router,
        profiles_router,
        jobs_router,
        searches_router,
        configurations_router,
    )
    for router in routers:
        app.include_router(router)
    install_ui(app)  # the dashboard under /ui (docs/DESIGN.md, "Service")

    @app.get(
        "/healthz",
        tags=["health"],
        responses={
            200: {
                "content": {"application/json": {"example": {"status": "ok", "version": "0.1.0"}}}
            },
            503: {"model": ErrorResponse, "description": "database unreachable"},
        },
    )
    def healthz() -> JSONResponse:
        """Liveness and database check (no token needed)."""
        try:
            with app.state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: database unreachable: %s", exc)
            return JSONResponse(
                {"detail": f"database unreachable ({type(exc).__name__})"}, status_code=503
            )
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        dependencies=[Depends(get_principal)],
        responses={
            200: {
                "content": {
                    "text/plain": {
                        "example": 'mess_http_requests_total{method="POST",route="/v1/search",'
                        'status="200"} 1042.0\n'
                    }
                }
            },
            401: {"model": ErrorResponse},
        },
    )
    def prometheus_metrics() -> Response:
        """Prometheus metrics (any valid token): request counts and latency per route."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


def app_factory() -> FastAPI:
    """``uvicorn --factory`` entry point reading settings from the environment."""
    return create_app()


__all__ = ["app_factory", "create_app", "prepare"]
