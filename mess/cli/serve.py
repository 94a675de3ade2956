"""``mess serve``: run the MESS service."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mess.cli._app import UserError, app


def serve(
    host: str = "127.0.0.1", port: int = 8000, workers: int = 1, search_worker: bool = True
) -> None:
    """Run the service with uvicorn (settings from ``MESS_*``; embedded defaults: SQLite
    and blobs under ``./mess-data``).

    Args:
        host: interface to bind.
        port: TCP port.
        workers: uvicorn worker processes.
        search_worker: run searches in the API processes too (False: an API-only replica,
            ``mess worker`` processes run them; the same as ``MESS_EMBEDDED_WORKER=0``).
    """
    try:
        import uvicorn

        from service.app import prepare
        from service.settings import Settings
    except ImportError as exc:
        raise UserError(
            f"the service needs the 'service' extra: pip install 'mess[service]' ({exc})"
        ) from None
    if not search_worker:
        # read by every uvicorn process's Settings (the factory takes no arguments)
        os.environ["MESS_EMBEDDED_WORKER"] = "0"
    settings = Settings()
    if workers > 1:
        prepare(settings)  # once before the workers start: one generated admin token
    uvicorn.run(
        "service.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # MESS_LOG_LEVEL=WARNING also drops uvicorn's per-request access log lines
        log_level=settings.log_level.lower(),
    )


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each with its own caches).")
    ] = 1,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Run searches in this process too; --no-worker: an API-only replica "
            "(run mess worker elsewhere). Default: MESS_EMBEDDED_WORKER, else on.",
        ),
    ] = True,
) -> None:
    """Run the MESS service (MESS_DATABASE_URL, MESS_DATA_DIR, MESS_ADMIN_TOKEN, ...).

    Example: MESS_ADMIN_TOKEN=$(openssl rand -hex 24) mess serve --port 8000
    """
    serve(host, port, workers, worker)
