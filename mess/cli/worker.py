"""``mess worker``: run the service's searches in a process of their own."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from mess.cli._app import UserError, app


def worker(threads: int | None = None) -> None:
    """Claim and compute queued searches until SIGTERM/SIGINT (settings from ``MESS_*``:
    the same database and blob store as the service's).

    Args:
        threads: search threads; default ``MESS_SEARCH_WORKERS``.
    """
    try:
        from service.settings import Settings
        from service.worker_process import run_worker
    except ImportError as exc:
        raise UserError(
            f"the worker needs the 'service' extra: pip install 'mess[service]' ({exc})"
        ) from None
    settings = Settings()
    logging.getLogger("service").setLevel(settings.log_level)  # as mess serve does
    count = settings.search_workers if threads is None else threads
    if count < 1:
        raise UserError(
            "a worker needs at least one search thread (--threads, MESS_SEARCH_WORKERS)"
        )
    if run_worker(settings, count):
        # a search thread is still in the engine (its search was handed back): exiting
        # normally would wait for it (the engine's thread pool joins at exit)
        logging.shutdown()
        os._exit(0)


@app.command("worker")
def worker_command(
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Search threads (default: MESS_SEARCH_WORKERS)."),
    ] = None,
) -> None:
    """Run searches for the service (MESS_DATABASE_URL, MESS_DATA_DIR or MESS_BLOB_BACKEND,
    MESS_SEARCH_LEASE_SECONDS, MESS_SEARCH_BATCH_WINDOW, MESS_SEARCH_SHARDS).

    Example: MESS_DATABASE_URL=postgresql+psycopg://mess@db/mess mess worker
    """
    worker(threads)
