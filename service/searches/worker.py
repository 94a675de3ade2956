"""The search worker pool: threads in each API process claiming queued searches.

The queue is the ``searches`` table: a claim is a conditional update, so several API
processes or replicas share it safely. A running search touches ``updated_at`` while it
progresses; one left untouched for ``STALE_SECONDS`` (its process died) is claimed again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service.blobs import BlobStore
from service.db import utcnow
from service.searches import repository
from service.searches.models import DONE, FAILED, Search

log = logging.getLogger(__name__)
STALE_SECONDS = 600.0
TOUCH_SECONDS = 30.0


class SearchWorker:
    def __init__(self, make_session: sessionmaker[Session], blobs: BlobStore, threads: int) -> None:
        self.make_session = make_session
        self.blobs = blobs
        self.threads = threads
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.pool: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"mess-search-{i}", daemon=True)
            t.start()
            self.pool.append(t)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        for t in self.pool:
            t.join(timeout=5)

    def notify(self) -> None:
        """A search was queued: look now rather than at the next poll."""
        self.wake.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                worked = self.run_once()
            except Exception:  # keep the worker alive; the search row holds the error
                log.exception("search worker error")
                worked = False
            if not worked:
                self.wake.wait(2.0)
                self.wake.clear()

    def run_once(self) -> bool:
        """Claim and compute one search; False when none is waiting."""
        now = utcnow()
        stale = now - dt.timedelta(seconds=STALE_SECONDS)
        with self.make_session() as session:
            search_id = repository.next_claimable(session, stale)
            if search_id is None or not repository.claim(session, search_id, now, stale):
                session.rollback()
                return False
            session.commit()
        self._compute(search_id)
        return True

    def _compute(self, search_id: int) -> None:
        from mess.costs import parse_costs
        from mess.search import compute_front
        from mess.stats import load_stats

        with self.make_session() as session:
            search = repository.get(session, search_id)
            assert search is not None
            try:
                stats_sha, costs = self._inputs(session, search)
                with tempfile.TemporaryDirectory(prefix="mess-search-") as tmp:
                    stats_path = Path(tmp) / "stats.npz"
                    stats_path.write_bytes(b"".join(self.blobs.iter_chunks(stats_sha)))
                    stats = load_stats(stats_path)
                    options = dict(search.options)
                    start = time.perf_counter()
                    front = compute_front(
                        stats,
                        parse_costs(costs),
                        max_exits=int(options["max_exits"]),
                        image_thresholds=options.get("image_thresholds"),
                        per_exit_thresholds=bool(options["per_exit_thresholds"]),
                        truncation=bool(options["truncation"]),
                        progress=self._toucher(search_id),
                    )
                    seconds = time.perf_counter() - start
                    front_path = Path(tmp) / "front.npz"
                    front.save(front_path)
                    sha, _ = self.blobs.put_file(front_path)
                search.status, search.front_sha256 = DONE, sha
                search.reference_miou = float(front.reference_miou)
                search.configs_evaluated = int(front.configs_evaluated)
                search.seconds = seconds
                log.info(
                    "search %s: %d configurations in %.2f s",
                    search_id,
                    front.configs_evaluated,
                    seconds,
                )
            except Exception as exc:
                log.exception("search %s failed", search_id)
                search.status, search.error = FAILED, f"{exc.__class__.__name__}: {exc}"[:4000]
            search.updated_at = utcnow()
            session.commit()

    def _inputs(self, session: Session, search: Search) -> tuple[str, dict[str, Any]]:
        from service.profiles.models import Profile
        from service.supernets.service import get_supernet

        supernet = get_supernet(session, search.supernet_id)
        if search.profile_id is None:
            costs = json.loads(b"".join(self.blobs.iter_chunks(supernet.costs_sha256)))
        else:
            profile = session.get(Profile, search.profile_id)
            assert profile is not None
            costs = dict(profile.costs)
        return supernet.stats_sha256, costs

    def _toucher(self, search_id: int) -> Any:
        last = [time.monotonic()]

        def touch(_done: int, _total: int) -> None:
            if time.monotonic() - last[0] < TOUCH_SECONDS:
                return
            last[0] = time.monotonic()
            with self.make_session() as session:
                search = repository.get(session, search_id)
                if search is not None:
                    search.updated_at = utcnow()
                    session.commit()

        return touch
