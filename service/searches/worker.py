"""The search worker pool: threads in each API process claiming queued searches.

The queue is the ``searches`` table: a claim is a conditional update, so several API
processes or replicas share it safely. A running search touches ``updated_at`` while it
progresses; one left untouched for ``STALE_SECONDS`` (its process died) is claimed again.

Each step is a unit of work of its own (:func:`service.db.transaction`): the claim, reading
the inputs, each touch, storing the outcome. The front is computed outside any transaction,
so a long search holds no database lock.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mess.costs import parse_costs
from mess.search import ParetoFront, compute_front
from mess.stats import load_stats
from service.blobs import BlobStore
from service.db import transaction, utcnow
from service.searches import repository
from service.searches.models import DONE, FAILED, Search
from service.supernets.service import get_supernet
from service.verifications.latency import Correction, corrected_costs

log = logging.getLogger(__name__)
STALE_SECONDS = 600.0
TOUCH_SECONDS = 30.0


@dataclass(frozen=True)
class _Inputs:
    stats_sha256: str
    costs: dict[str, Any] | None  # a device profile's table
    costs_sha256: str  # the bundle's GFLOPs table, used when ``costs`` is None
    options: dict[str, Any]


class SearchWorker:
    """Threads computing queued searches.

    Args:
        make_session: sessions for its units of work (write transactions: each one writes).
        blobs: where stats, cost tables and fronts are.
        threads: how many threads.
        on_finished: called with a search's id once its outcome is committed.
    """

    def __init__(
        self,
        make_session: sessionmaker[Session],
        blobs: BlobStore,
        threads: int,
        on_finished: Callable[[int], None] = lambda _search_id: None,
    ) -> None:
        self.make_session = make_session
        self.blobs = blobs
        self.threads = threads
        self.on_finished = on_finished
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
        with transaction(self.make_session) as session:
            search_id = repository.next_claimable(session, stale)
            claimed = search_id is not None and repository.claim(session, search_id, now, stale)
        if not claimed:
            return False
        assert search_id is not None
        self._compute(search_id)
        return True

    def _compute(self, search_id: int) -> None:
        outcome: dict[str, Any]
        try:
            with transaction(self.make_session) as session:
                inputs = self._inputs(session, search_id)
            start = time.perf_counter()
            front, sha = self._front(search_id, inputs)
            seconds = time.perf_counter() - start
            outcome = {
                "status": DONE,
                "front_sha256": sha,
                "reference_miou": float(front.reference_miou),
                "configs_evaluated": int(front.configs_evaluated),
                "seconds": seconds,
            }
            log.info(
                "search %s: %d configurations in %.2f s",
                search_id,
                front.configs_evaluated,
                seconds,
            )
        except Exception as exc:
            log.exception("search %s failed", search_id)
            outcome = {"status": FAILED, "error": f"{exc.__class__.__name__}: {exc}"[:4000]}
        with transaction(self.make_session) as session:
            search = repository.get(session, search_id)
            assert search is not None
            for name, value in outcome.items():
                setattr(search, name, value)
            search.updated_at = utcnow()
        self.on_finished(search_id)

    def _inputs(self, session: Session, search_id: int) -> _Inputs:
        search: Search | None = repository.get(session, search_id)
        assert search is not None
        supernet = get_supernet(session, search.supernet_id)
        costs = None
        if search.profile_id is not None:
            costs = dict(repository.profile_costs(session, search.profile_id))
        return _Inputs(supernet.stats_sha256, costs, supernet.costs_sha256, dict(search.options))

    def _front(self, search_id: int, inputs: _Inputs) -> tuple[ParetoFront, str]:
        costs = inputs.costs
        if costs is None:
            costs = json.loads(b"".join(self.blobs.iter_chunks(inputs.costs_sha256)))
        options = inputs.options
        correction = options.get("correction")
        if correction is not None:  # learned from verifications of this device
            costs = corrected_costs(
                costs, Correction(float(correction["scale"]), float(correction["offset_ms"]))
            )
        with tempfile.TemporaryDirectory(prefix="mess-search-") as tmp:
            stats_path = Path(tmp) / "stats.npz"
            stats_path.write_bytes(b"".join(self.blobs.iter_chunks(inputs.stats_sha256)))
            front = compute_front(
                load_stats(stats_path),
                parse_costs(costs),
                max_exits=int(options["max_exits"]),
                image_thresholds=options.get("image_thresholds"),
                per_exit_thresholds=bool(options["per_exit_thresholds"]),
                truncation=bool(options["truncation"]),
                progress=self._toucher(search_id),
            )
            front_path = Path(tmp) / "front.npz"
            front.save(front_path)
            sha, _ = self.blobs.put_file(front_path)
        return front, sha

    def _toucher(self, search_id: int) -> Callable[[int, int], None]:
        last = [time.monotonic()]

        def touch(_done: int, _total: int) -> None:
            if time.monotonic() - last[0] < TOUCH_SECONDS:
                return
            last[0] = time.monotonic()
            with transaction(self.make_session) as session:
                repository.touch(session, search_id, utcnow())

        return touch
