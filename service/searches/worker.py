"""Search workers: threads claiming queued searches from the database, in an API process
(the embedded worker of ``mess serve``) or in a ``mess worker`` process of their own.

The queue is the ``searches`` table. A claim is a conditional update (on PostgreSQL after
``SELECT ... FOR UPDATE SKIP LOCKED``) that gives the claiming thread a lease; a heartbeat
renews it while the search runs. A worker killed mid-search stops renewing: once its lease
has expired another worker claims the search and computes it again, and only the holder of
the lease may store the outcome, so a search finishes once.

Batching: a queued search is claimed only once it has waited ``batch_window`` seconds, and
the claim takes every queued search of the same supernet with the same options along (the
other devices' profiles): one walk of the space (:func:`mess.search.compute_fronts`) gives
each its front, stored as its own search would have stored it.

Each step is a unit of work of its own (:func:`service.db.transaction`): the claim, reading
the inputs, each renewal, storing each outcome. The fronts are computed outside any
transaction, so a long search holds no database lock.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mess.costs import CostTable, parse_costs
from mess.search import ParetoFront, compute_fronts
from mess.stats import load_stats
from service.blobs import BlobStore
from service.db import transaction, utcnow
from service.searches import repository
from service.searches.models import DONE, FAILED, Search
from service.supernets.service import get_supernet
from service.verifications.latency import Correction, corrected_costs

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # an idle worker looks at the queue this often (or when notified)
MAX_BATCH = 64  # searches computed in one walk of the space at most


@dataclass(frozen=True)
class _Inputs:
    search_id: int
    stats_sha256: str
    costs: dict[str, Any] | None  # a device profile's table
    costs_sha256: str  # the bundle's GFLOPs table, used when ``costs`` is None
    options: dict[str, Any]


def worker_name() -> str:
    """``host:pid:random``: who holds a lease (the pid tells an operator which process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class SearchWorker:
    """Threads computing queued searches.

    Args:
        make_session: sessions for its units of work (write transactions: each one writes).
        blobs: where stats, cost tables and fronts are.
        threads: how many threads (0: none; :meth:`notify` is then a no-op).
        on_finished: called with a search's id once its outcome is committed.
        lease_seconds: how long a claim holds without renewal (renewed every third of it).
        batch_window: how long a queued search waits for companions to share its walk.
        search_threads: cores each walk computes on (None: all).
    """

    def __init__(
        self,
        make_session: sessionmaker[Session],
        blobs: BlobStore,
        threads: int,
        on_finished: Callable[[int], None] = lambda _search_id: None,
        *,
        lease_seconds: float = 60.0,
        batch_window: float = 2.0,
        search_threads: int | None = None,
    ) -> None:
        self.make_session = make_session
        self.blobs = blobs
        self.threads = threads
        self.on_finished = on_finished
        self.lease_seconds = lease_seconds
        self.batch_window = batch_window
        self.search_threads = search_threads
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.pool: list[threading.Thread] = []
        self.held: dict[str, list[int]] = {}  # lease owner -> the searches it computes
        self.held_lock = threading.Lock()

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"mess-search-{i}", daemon=True)
            t.start()
            self.pool.append(t)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the threads; searches still computing after ``timeout`` are handed back to
        the queue (another worker takes them at once, not after the lease).

        Returns:
            Whether a search is still computing (it cannot be interrupted: a process that
            is stopping should exit without waiting for it).
        """
        self.stopping.set()
        self.wake.set()
        for t in self.pool:
            t.join(timeout=timeout)
        with self.held_lock:
            held = dict(self.held)
        for owner, ids in held.items():
            try:
                with transaction(self.make_session) as session:
                    n = repository.release(session, ids, owner, utcnow())
                log.info("handed back %d unfinished search(es) %s", n, ids)
            except Exception:  # the lease expires anyway
                log.exception("could not hand back searches %s", ids)
        return any(t.is_alive() for t in self.pool)

    def notify(self) -> None:
        """A search was queued: look now rather than at the next poll."""
        self.wake.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                worked = self.run_once()
                pause = 0.0 if worked else self._idle_seconds()
            except Exception:  # keep the worker alive; the search row holds the error
                log.exception("search worker error")
                pause = POLL_SECONDS
            if pause > 0:
                self.wake.wait(pause)
                self.wake.clear()

    def _idle_seconds(self) -> float:
        """How long to sleep: until the oldest queued search has waited the batch window,
        at most ``POLL_SECONDS`` (searches queued by other processes wake no one here)."""
        with transaction(self.make_session) as session:
            oldest = repository.next_ripe(session)
        if oldest is None:
            return POLL_SECONDS
        ripe = (oldest - utcnow()).total_seconds() + self.batch_window
        return min(POLL_SECONDS, max(0.01, ripe))

    def run_once(self) -> bool:
        """Claim one search (and its companions) and compute them; False when none is
        claimable now."""
        owner = worker_name()
        ids = self.claim(owner)
        if not ids:
            return False
        with self.held_lock:
            self.held[owner] = ids
        try:
            self._compute(owner, ids)
        finally:
            with self.held_lock:
                self.held.pop(owner, None)
        return True

    def claim(self, owner: str) -> list[int]:
        """Claim the oldest claimable search and the queued searches that can share its
        walk of the space, for ``owner``; their ids (empty: nothing to do)."""
        now = utcnow()
        until = now + dt.timedelta(seconds=self.lease_seconds)
        ripe_before = now - dt.timedelta(seconds=self.batch_window)
        with transaction(self.make_session) as session:
            first = repository.next_claimable(session, now, ripe_before)
            if first is None or not repository.claim(session, first.id, owner, now, until):
                return []
            ids = [first.id]
            for other in repository.companions(session, first, MAX_BATCH - 1):
                if repository.claim(session, other.id, owner, now, until):
                    ids.append(other.id)
        return ids

    def _compute(self, owner: str, ids: list[int]) -> None:
        outcomes: dict[int, dict[str, Any]]
        with _Heartbeat(self, owner, ids):
            try:
                with transaction(self.make_session) as session:
                    inputs = [self._inputs(session, i) for i in ids]
                outcomes = self._outcomes(inputs)
            except Exception as exc:  # e.g. a blob or row gone: every search of it fails
                log.exception("searches %s failed", ids)
                outcomes = {i: _failed(exc) for i in ids}
        for search_id in ids:
            with transaction(self.make_session) as session:
                stored = repository.finish(session, search_id, owner, outcomes[search_id])
            if stored:
                log.info(
                    "search %s stored (%s) by %s", search_id, outcomes[search_id]["status"], owner
                )
                self.on_finished(search_id)
            else:
                log.warning(
                    "search %s: lease lost to another worker, this outcome discarded", search_id
                )

    def _outcomes(self, inputs: list[_Inputs]) -> dict[int, dict[str, Any]]:
        """Each search's outcome: one fleet search when they share it, else one each (a
        table that cannot join the fleet fails only its own search)."""
        if len(inputs) > 1:
            try:
                return self._fleet(inputs)
            except Exception:
                log.exception(
                    "fleet search of %s failed: searching one by one", [i.search_id for i in inputs]
                )
        outcomes: dict[int, dict[str, Any]] = {}
        for one in inputs:
            try:
                outcomes.update(self._fleet([one]))
            except Exception as exc:
                log.exception("search %s failed", one.search_id)
                outcomes[one.search_id] = _failed(exc)
        return outcomes

    def _fleet(self, inputs: list[_Inputs]) -> dict[int, dict[str, Any]]:
        options = inputs[0].options
        tables = [self._table(i) for i in inputs]
        with tempfile.TemporaryDirectory(prefix="mess-search-") as tmp:
            stats_path = Path(tmp) / "stats.npz"
            stats_path.write_bytes(b"".join(self.blobs.iter_chunks(inputs[0].stats_sha256)))
            start = time.perf_counter()
            fronts = compute_fronts(
                load_stats(stats_path),
                tables,
                max_exits=int(options["max_exits"]),
                image_thresholds=options.get("image_thresholds"),
                per_exit_thresholds=bool(options["per_exit_thresholds"]),
                truncation=bool(options["truncation"]),
                threads=self.search_threads,
            )
            seconds = time.perf_counter() - start
            log.info(
                "searches %s: %d configurations, %d cost table(s) in %.2f s",
                [i.search_id for i in inputs],
                fronts[0].configs_evaluated,
                len(fronts),
                seconds,
            )
            return {
                i.search_id: self._store(front, seconds, Path(tmp))
                for i, front in zip(inputs, fronts, strict=True)
            }

    def _store(self, front: ParetoFront, seconds: float, tmp: Path) -> dict[str, Any]:
        path = tmp / "front.npz"
        front.save(path)
        sha, _ = self.blobs.put_file(path)
        return {
            "status": DONE,
            "front_sha256": sha,
            "reference_miou": float(front.reference_miou),
            "configs_evaluated": int(front.configs_evaluated),
            "seconds": seconds,
            "error": None,
            "updated_at": utcnow(),
        }

    def _table(self, inputs: _Inputs) -> CostTable:
        costs = inputs.costs
        if costs is None:
            costs = json.loads(b"".join(self.blobs.iter_chunks(inputs.costs_sha256)))
        correction = inputs.options.get("correction")
        if correction is not None:  # learned from verifications of this device
            costs = corrected_costs(
                costs, Correction(float(correction["scale"]), float(correction["offset_ms"]))
            )
        return parse_costs(costs)

    def _inputs(self, session: Session, search_id: int) -> _Inputs:
        search: Search | None = repository.get(session, search_id)
        assert search is not None
        supernet = get_supernet(session, search.supernet_id)
        costs = None
        if search.profile_id is not None:
            costs = dict(repository.profile_costs(session, search.profile_id))
        return _Inputs(
            search_id, supernet.stats_sha256, costs, supernet.costs_sha256, dict(search.options)
        )


def _failed(exc: Exception) -> dict[str, Any]:
    return {
        "status": FAILED,
        "error": f"{exc.__class__.__name__}: {exc}"[:4000],
        "updated_at": utcnow(),
    }


class _Heartbeat:
    """Renews a claim's lease every third of ``lease_seconds`` while the block runs (in a
    thread of its own: the search's kernels release the GIL)."""

    def __init__(self, worker: SearchWorker, owner: str, ids: list[int]) -> None:
        self.worker, self.owner, self.ids = worker, owner, ids
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mess-lease", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        every = self.worker.lease_seconds / 3
        while not self.done.wait(every):
            now = utcnow()
            until = now + dt.timedelta(seconds=self.worker.lease_seconds)
            try:
                with transaction(self.worker.make_session) as session:
                    held = repository.renew(session, self.ids, self.owner, now, until)
            except Exception:  # the database is away: try again at the next beat
                log.exception("could not renew the lease of searches %s", self.ids)
                continue
            if held < len(self.ids):
                log.warning(
                    "%s holds %d of searches %s: lease expired, another worker took over",
                    self.owner,
                    held,
                    self.ids,
                )
