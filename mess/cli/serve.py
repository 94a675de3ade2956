"""``mess serve``: run the MESS service."""

from __future__ import annotations

from typing import Annotated

import typer

from mess.cli._app import UserError, app


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the service with uvicorn (settings from ``MESS_*``; embedded defaults: SQLite
    and blobs under ``./mess-data``).

    Args:
        host: interface to bind.
        port: TCP port.
        workers: uvicorn worker processes.
    """
    try:
        import uvicorn

        from service.app import prepare
        from service.settings import Settings
    except ImportError as exc:
        raise UserError(
            f"the service needs the 'service' extra: pip install 'mess[service]' ({exc})"
        ) from None
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
) -> None:
    """Run the MESS service (MESS_DATABASE_URL, MESS_DATA_DIR, MESS_ADMIN_TOKEN, ...).

    Example: MESS_ADMIN_TOKEN=$(openssl rand -hex 24) mess serve --port 8000
    """
    serve(host, port, workers)
