"""``mess worker``: the service's background work in a process of its own.

The work is the searches (:class:`service.searches.worker.SearchWorker`); the API's other
background tasks are light (cache checks, waiting on the queue) and stay in the API. A
worker needs only the database and the blob store of the service: run N of them on N
machines against one PostgreSQL and one S3 bucket, and start the API replicas with
``MESS_EMBEDDED_WORKER=0``; with ``MESS_SEARCH_SHARDS=N`` one search is split over them
(docs/DESIGN.md, "Service").
"""

from __future__ import annotations

import logging
import signal
import threading

from service.blobs import make_blob_store
from service.db import make_engine, make_sessionmaker, upgrade
from service.searches.worker import SearchWorker
from service.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, threads: int, stop: threading.Event | None = None) -> bool:
    """Compute queued searches until ``stop`` is set (or SIGTERM/SIGINT arrives, when
    called from the main thread); searches still running then go back to the queue.

    Returns:
        Whether a search was still computing when it stopped (handed back, but its thread
        cannot be interrupted: the caller should exit the process without waiting for it).

    Args:
        settings: the service's settings (database, blobs, lease, batch window, shards).
        threads: search threads (each computes one search or batch at a time).
        stop: set it to stop; default: a fresh event set by the signals.
    """
    if threads < 1:
        raise ValueError(f"a worker needs at least one thread, got {threads}")
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: stop.set())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)  # under a lock: API processes and workers may start together
    engine = make_engine(settings.db_url)
    worker = SearchWorker(
        make_sessionmaker(engine, write=True),
        make_blob_store(settings),
        threads,
        lease_seconds=settings.search_lease_seconds,
        batch_window=settings.search_batch_window,
        search_threads=settings.search_threads,
        shards=settings.search_shards,
        shard_min_configs=settings.search_shard_min_configs,
    )
    worker.start()
    log.info(
        "mess worker: %d search thread(s), lease %.1f s, batch window %.1f s, %d shard(s)",
        threads,
        settings.search_lease_seconds,
        settings.search_batch_window,
        settings.search_shards,
    )
    busy = True
    try:
        stop.wait()
    finally:
        busy = worker.stop()
        engine.dispose()
        log.info("mess worker stopped")
    return busy
