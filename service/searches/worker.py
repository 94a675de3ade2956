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

Sharding (``shards`` > 1, for spaces of at least ``shard_min_configs`` configurations): the
worker that claims a search (or a batch) does not compute it but splits it into ``shards``
queued shard items (:class:`service.searches.models.SearchShard`), each a part of the space
(:class:`mess.search.Shard`). Workers claim shard items as they claim searches, the same
index of searches split alike in one walk, each under a lease of its own. The worker whose
stored shard completes the set takes the merge under the search's lease (a conditional
update: of two finishers, one merges), merges the shards' fronts
(:func:`mess.search.merge_fronts`, exactly the unsharded front) and stores the search's
front as a whole search's is stored; a merge whose worker died is taken over after the
lease. A shard that fails fails its search.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mess.costs import CostTable, parse_costs
from mess.search import ParetoFront, Problem, SearchSpace, Shard, compute_fronts, merge_fronts
from mess.stats import Stats, load_stats
from service.blobs import BlobStore
from service.db import transaction, utcnow
from service.searches import repository
from service.searches.models import DONE, FAILED, Search
from service.supernets.service import get_supernet
from service.verifications.latency import Correction, corrected_costs

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # an idle worker looks at the queue this often (or when notified)
MAX_BATCH = 64  # searches computed in one walk of the space at most
# The worker's threads: "mess-search-<i>" compute searches, "mess-lease" renews their leases.
SEARCH_THREAD = "mess-search"
LEASE_THREAD = "mess-lease"
_Renew = Callable[[Session, list[int], str, dt.datetime, dt.datetime], int]


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
        shards: split each claimed search (or batch) into this many shard items (1: none).
        shard_min_configs: split only spaces of at least this many configurations.
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
        shards: int = 1,
        shard_min_configs: int = 0,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self.make_session = make_session
        self.blobs = blobs
        self.threads = threads
        self.on_finished = on_finished
        self.lease_seconds = lease_seconds
        self.batch_window = batch_window
        self.search_threads = search_threads
        self.shards = shards
        self.shard_min_configs = shard_min_configs
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.pool: list[threading.Thread] = []
        self.held: dict[str, list[int]] = {}  # lease owner -> the searches it computes
        self.held_shards: dict[str, list[int]] = {}  # lease owner -> the shards it computes
        self.held_lock = threading.Lock()

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"{SEARCH_THREAD}-{i}", daemon=True)
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
            held = [
                *(("search(es)", repository.release, o, i) for o, i in self.held.items()),
                *(
                    ("shard(s)", repository.release_shards, o, i)
                    for o, i in self.held_shards.items()
                ),
            ]
        for what, release, owner, ids in held:
            try:
                with transaction(self.make_session) as session:
                    n = release(session, ids, owner, utcnow())
                log.info("handed back %d unfinished %s %s", n, what, ids)
            except Exception:  # the lease expires anyway
                log.exception("could not hand back %s %s", what, ids)
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
        """Do the next piece of work: a due merge of a split search, else a shard (and its
        companions), else a search (and its companions), computed or split; False when
        nothing is claimable now. Work already started comes first."""
        owner = worker_name()
        search_id = self.claim_merge(owner)
        if search_id is not None:
            with self._holding(self.held, owner, [search_id]):
                self._merge(owner, search_id)
            return True
        shard_ids = self.claim_shards(owner)
        if shard_ids:
            with self._holding(self.held_shards, owner, shard_ids):
                self._compute_shards(owner, shard_ids)
            return True
        ids = self.claim(owner)
        if not ids:
            return False
        with self._holding(self.held, owner, ids):
            self._compute(owner, ids)
        return True

    @contextmanager
    def _holding(self, held: dict[str, list[int]], owner: str, ids: list[int]) -> Iterator[None]:
        """Record what ``owner`` computes, for :meth:`stop` to hand back."""
        with self.held_lock:
            held[owner] = ids
        try:
            yield
        finally:
            with self.held_lock:
                held.pop(owner, None)

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

    def claim_shards(self, owner: str) -> list[int]:
        """Claim the oldest claimable shard and the queued shards of the same index of
        searches split alike (they share its walk), for ``owner``; their ids."""
        now = utcnow()
        until = now + dt.timedelta(seconds=self.lease_seconds)
        with transaction(self.make_session) as session:
            first = repository.next_shard(session, now)
            if first is None or not repository.claim_shard(session, first.id, owner, now, until):
                return []
            ids = [first.id]
            for other in repository.shard_companions(session, first, MAX_BATCH - 1):
                if repository.claim_shard(session, other.id, owner, now, until):
                    ids.append(other.id)
        return ids

    def claim_merge(self, owner: str, search_id: int | None = None) -> int | None:
        """Claim the merge of a split search whose shards are all done (``search_id``, or
        the oldest due), for ``owner``; its id, or None (not due, or someone merges it)."""
        now = utcnow()
        until = now + dt.timedelta(seconds=self.lease_seconds)
        with transaction(self.make_session) as session:
            if search_id is None:
                search_id = repository.next_mergeable(session, now)
            if search_id is None or not repository.claim_merge(
                session, search_id, owner, now, until
            ):
                return None
        return search_id

    def _compute(self, owner: str, ids: list[int]) -> None:
        outcomes: dict[int, dict[str, Any]]
        with _Heartbeat(self, owner, ids, repository.renew):
            try:
                with transaction(self.make_session) as session:
                    inputs = [self._inputs(session, i) for i in ids]
                if self._split(owner, inputs):
                    return
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

    def _split(self, owner: str, inputs: list[_Inputs]) -> bool:
        """Split the claimed searches into shard items instead of computing them, when
        sharding is on and their space is large enough; whether it did (a search whose
        lease was lost meanwhile is another worker's: nothing left to do either way)."""
        if self.shards < 2:
            return False
        if self.shard_min_configs > 0:
            try:
                size = self._space_size(inputs[0])
            except Exception:  # computed whole, it fails as an unsharded search does
                log.exception("search %s: cannot size its space", inputs[0].search_id)
                return False
            if size < self.shard_min_configs:
                return False
        with transaction(self.make_session) as session:
            split = repository.split(
                session, [i.search_id for i in inputs], owner, self.shards, utcnow()
            )
        log.info("searches %s split into %d shards by %s", split, self.shards, owner)
        self.wake.set()  # this process's idle threads take shards at once
        return True

    def _space_size(self, one: _Inputs) -> int:
        options = one.options
        with tempfile.TemporaryDirectory(prefix="mess-search-") as tmp:
            stats = self._stats(one.stats_sha256, Path(tmp))
        space = SearchSpace(
            Problem(stats, self._table(one)),
            max_exits=int(options["max_exits"]),
            image_thresholds=options.get("image_thresholds"),
            per_exit_thresholds=bool(options["per_exit_thresholds"]),
            truncation=bool(options["truncation"]),
        )
        return space.size()

    def _compute_shards(self, owner: str, shard_ids: list[int]) -> None:
        """Compute claimed shards (one walk), store each front, then fail or merge their
        searches as their outcome asks."""
        outcomes: dict[int, dict[str, Any]]
        rows: list[tuple[int, int, Shard]] = []  # (shard id, search id, its shard)
        with _Heartbeat(self, owner, shard_ids, repository.renew_shards):
            try:
                with transaction(self.make_session) as session:
                    for shard_id in shard_ids:
                        row = repository.get_shard(session, shard_id)
                        search = repository.get(session, row.search_id) if row else None
                        assert row is not None and search is not None and search.shards
                        rows.append(
                            (shard_id, row.search_id, Shard(row.shard_index, search.shards))
                        )
                    inputs = [self._inputs(session, search_id) for _, search_id, _ in rows]
                by_search = self._outcomes(inputs, rows[0][2])
                outcomes = {shard_id: by_search[search_id] for shard_id, search_id, _ in rows}
            except Exception as exc:  # e.g. a blob or row gone: every shard of it fails
                log.exception("shards %s failed", shard_ids)
                outcomes = {i: _failed(exc) for i in shard_ids}
        for shard_id, search_id, shard in rows:
            outcome = outcomes[shard_id]
            values = {k: v for k, v in outcome.items() if k in _SHARD_COLUMNS}
            with transaction(self.make_session) as session:
                stored = repository.finish_shard(session, shard_id, owner, values)
            if not stored:
                log.warning(
                    "search %s shard %s: lease lost to another worker, this outcome discarded",
                    search_id,
                    shard,
                )
                continue
            log.info(
                "search %s shard %s stored (%s) by %s", search_id, shard, outcome["status"], owner
            )
            if outcome["status"] == FAILED:
                self._fail_split(search_id, f"shard {shard}: {outcome['error']}")
            else:
                self._merge_if_complete(search_id)

    def _fail_split(self, search_id: int, error: str) -> None:
        with transaction(self.make_session) as session:
            failed = repository.fail_split(session, search_id, error[:4000], utcnow())
        if failed:
            log.info("search %s failed: %s", search_id, error)
            self.on_finished(search_id)

    def _merge_if_complete(self, search_id: int) -> None:
        """Merge ``search_id`` now if its last shard was just stored and no one else merges
        it (the other finisher, or the next claim loop after a merger died, does)."""
        owner = worker_name()
        if self.claim_merge(owner, search_id) is None:
            return
        with self._holding(self.held, owner, [search_id]):
            self._merge(owner, search_id)

    def _merge(self, owner: str, search_id: int) -> None:
        """Merge the shard fronts of ``search_id`` (whose merge ``owner`` holds) into its
        front and store it, lease-conditionally, as a whole search's outcome. Idempotent:
        the same shards give the same front, bit for bit."""
        with _Heartbeat(self, owner, [search_id], repository.renew):
            try:
                with transaction(self.make_session) as session:
                    shas = repository.shard_fronts(session, search_id)
                with tempfile.TemporaryDirectory(prefix="mess-merge-") as tmp:
                    fronts = []
                    for i, sha in enumerate(shas):
                        path = Path(tmp) / f"shard-{i}.npz"
                        path.write_bytes(b"".join(self.blobs.iter_chunks(sha)))
                        fronts.append(ParetoFront.load(path))
                    merged = merge_fronts(fronts)
                    outcome = self._store(merged, merged.seconds, Path(tmp))
            except Exception as exc:
                log.exception("search %s: merging its shards failed", search_id)
                outcome = _failed(exc, "merging the shards' fronts: ")
        with transaction(self.make_session) as session:
            stored = repository.finish(session, search_id, owner, outcome)
        if stored:
            log.info("search %s stored (%s) by %s", search_id, outcome["status"], owner)
            self.on_finished(search_id)
        else:
            log.warning("search %s: merge lease lost to another worker, discarded", search_id)

    def _outcomes(
        self, inputs: list[_Inputs], shard: Shard | None = None
    ) -> dict[int, dict[str, Any]]:
        """Each search's outcome (of ``shard``'s part of its space, or all of it): one fleet
        search when they share it, else one each (a table that cannot join the fleet fails
        only its own search)."""
        if len(inputs) > 1:
            try:
                return self._fleet(inputs, shard)
            except Exception:
                log.exception(
                    "fleet search of %s failed: searching one by one", [i.search_id for i in inputs]
                )
        outcomes: dict[int, dict[str, Any]] = {}
        for one in inputs:
            try:
                outcomes.update(self._fleet([one], shard))
            except Exception as exc:
                log.exception("search %s failed", one.search_id)
                outcomes[one.search_id] = _failed(exc)
        return outcomes

    def _stats(self, sha: str, tmp: Path) -> Stats:
        path = tmp / "stats.npz"
        path.write_bytes(b"".join(self.blobs.iter_chunks(sha)))
        return load_stats(path)

    def _fleet(
        self, inputs: list[_Inputs], shard: Shard | None = None
    ) -> dict[int, dict[str, Any]]:
        options = inputs[0].options
        tables = [self._table(i) for i in inputs]
        with tempfile.TemporaryDirectory(prefix="mess-search-") as tmp:
            stats = self._stats(inputs[0].stats_sha256, Path(tmp))
            start = time.perf_counter()
            fronts = compute_fronts(
                stats,
                tables,
                max_exits=int(options["max_exits"]),
                image_thresholds=options.get("image_thresholds"),
                per_exit_thresholds=bool(options["per_exit_thresholds"]),
                truncation=bool(options["truncation"]),
                threads=self.search_threads,
                shard=shard,
            )
            seconds = time.perf_counter() - start
            log.info(
                "searches %s%s: %d configurations, %d cost table(s) in %.2f s",
                [i.search_id for i in inputs],
                f" shard {shard}" if shard is not None else "",
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


_SHARD_COLUMNS = ("status", "front_sha256", "configs_evaluated", "seconds", "error", "updated_at")


def _failed(exc: Exception, context: str = "") -> dict[str, Any]:
    return {
        "status": FAILED,
        "error": f"{context}{exc.__class__.__name__}: {exc}"[:4000],
        "updated_at": utcnow(),
    }


class _Heartbeat:
    """Renews a claim's lease (``renew``: of searches or of shards) every third of
    ``lease_seconds`` while the block runs (in a thread of its own: the search's kernels
    release the GIL)."""

    def __init__(self, worker: SearchWorker, owner: str, ids: list[int], renew: _Renew) -> None:
        self.worker, self.owner, self.ids, self.renew = worker, owner, ids, renew
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=LEASE_THREAD, daemon=True)

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
                    held = self.renew(session, self.ids, self.owner, now, until)
            except Exception:  # the database is away: try again at the next beat
                log.exception("could not renew the lease of %s", self.ids)
                continue
            if held < len(self.ids):
                log.warning(
                    "%s holds %d of %s: lease expired, another worker took over",
                    self.owner,
                    held,
                    self.ids,
                )
