"""Sharded searches through the service queue: a search split into shard items that workers
claim under leases, merged once into exactly the unsharded front (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from mess.costs import CostTable
from mess.search import ParetoFront, Problem, SearchSpace, compute_front
from mess.testing import random_costs, random_stats
from service.db import transaction
from service.searches import repository
from service.searches import worker as search_worker
from service.searches.models import DONE, FAILED, QUEUED, RUNNING, SearchShard
from service.searches.worker import SearchWorker
from service.settings import Settings
from service.supernets.service import get_supernet
from tests.service.conftest import ADMIN, app_with, auth
from tests.service.factories import make_bundle, space_of

SHARDS = 3
DEVICES = {"phone": 1, "board": 2}  # device -> the seed of its random cost table


@pytest.fixture
def space() -> dict[str, Any]:
    """A random small space (4 positions x 3 heads, 3 pixel thresholds) and two devices'
    cost tables."""
    stats = random_stats(positions=4, heads=3, num_samples=24, num_classes=4, seed=5)
    stats.meta["supernet"] = hashlib.sha256(b"sharded supernet").hexdigest()
    tables = {d: random_costs(stats, unit="ms", seed=s) for d, s in DEVICES.items()}
    return {"stats": stats, "tables": tables}


@pytest.fixture
def app_settings() -> dict[str, Any]:
    """The app's settings changed by a test (parametrize it): by default no embedded
    worker, the tests drive :class:`SearchWorker` themselves."""
    return {"embedded_worker": False}


@pytest.fixture
def service(
    settings: Settings, space: dict[str, Any], tmp_path: Path, app_settings: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """The space pushed as a supernet, profiled on both devices."""
    bundle = make_bundle(
        tmp_path / "rand.mess",
        "rand",
        space_of(space["stats"], random_costs(space["stats"], unit="gflops")),
    )
    for client in app_with(settings, **app_settings):
        h = auth(ADMIN)
        files = {"bundle": ("rand.mess", bundle.read_bytes(), "application/zip")}
        r = client.post("/v1/supernets", files=files, headers=h)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        for device, table in space["tables"].items():
            assert client.post("/v1/devices", json={"name": device}, headers=h).is_success
            r = client.post(
                "/v1/profiles",
                json={"supernet_id": sid, "device": device, "costs": table.to_json()},
                headers=h,
            )
            assert r.status_code == 201, r.text
        yield {"client": client, "sid": sid, "h": h, "state": client.app.state, **space}  # type: ignore[attr-defined]


def _search(service: dict[str, Any], device: str, wait: float) -> Any:
    body = {"supernet_id": service["sid"], "device": device, "objective": "pareto"}
    return service["client"].post(
        "/v1/search", json={**body, "wait_seconds": wait}, headers=service["h"]
    )


def _worker(service: dict[str, Any], finished: Counter[int] | None = None, **kwargs: Any) -> Any:
    state = service["state"]
    kwargs = {"batch_window": 0, "shards": SHARDS, **kwargs}
    if finished is not None:
        kwargs["on_finished"] = lambda search_id: finished.update([search_id])
    return SearchWorker(state.write_sessionmaker, state.blobs, 0, **kwargs)


def _row(service: dict[str, Any], search_id: int) -> Any:
    with transaction(service["state"].sessionmaker) as session:
        row = repository.get(session, search_id)
        assert row is not None
        session.expunge(row)
        return row


def _shards(service: dict[str, Any], search_id: int) -> list[SearchShard]:
    with transaction(service["state"].sessionmaker) as session:
        rows = list(
            session.scalars(
                select(SearchShard)
                .where(SearchShard.search_id == search_id)
                .order_by(SearchShard.shard_index)
            )
        )
        session.expunge_all()
        return rows


def _stored_front(service: dict[str, Any], sha: str, tmp_path: Path) -> ParetoFront:
    path = tmp_path / f"{sha}.npz"
    path.write_bytes(b"".join(service["state"].blobs.iter_chunks(sha)))
    return ParetoFront.load(path)


def _assert_same_front(front: ParetoFront, alone: ParetoFront) -> None:
    """Point for point: every stored array, the space and the header but ``seconds``."""
    for name in ("exp", "worst", "miou", "p90", "ranks", "counts"):
        np.testing.assert_array_equal(getattr(front, name), getattr(alone, name), err_msg=name)
    assert front.space == alone.space
    assert (front.reference_miou, front.configs_evaluated) == (
        alone.reference_miou,
        alone.configs_evaluated,
    )
    assert front.shard is None


def _unsharded(service: dict[str, Any], device: str) -> ParetoFront:
    table: CostTable = service["tables"][device]
    return compute_front(service["stats"], table)


def _queue_all(service: dict[str, Any]) -> dict[str, int]:
    ids = {}
    for device in DEVICES:
        r = _search(service, device, 0)
        assert r.status_code == 202, r.text
        ids[device] = r.json()["search_id"]
    return ids


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Any]]:
    """Each walk the workers make: its number of cost tables and its shard."""
    calls: list[tuple[int, Any]] = []
    real = search_worker.compute_fronts

    def counted(stats: Any, tables: Any, **kwargs: Any) -> Any:
        calls.append((len(tables), kwargs.get("shard")))
        return real(stats, tables, **kwargs)

    monkeypatch.setattr(search_worker, "compute_fronts", counted)
    return calls


def test_a_sharded_batch_is_claimed_by_two_workers_and_stores_the_unsharded_fronts(
    service: dict[str, Any], walks: list[tuple[int, Any]], tmp_path: Path
) -> None:
    ids = _queue_all(service)
    finished: Counter[int] = Counter()
    a, b = _worker(service, finished), _worker(service, finished)
    claimed = a.claim("splitter")
    assert sorted(claimed) == sorted(ids.values())
    a._compute("splitter", claimed)  # splits both searches instead of computing them
    assert walks == []
    for search_id in ids.values():
        row = _row(service, search_id)
        assert (row.status, row.shards, row.lease_owner) == (RUNNING, SHARDS, None)
        assert [(s.shard_index, s.status) for s in _shards(service, search_id)] == [
            (i, QUEUED) for i in range(SHARDS)
        ]
    assert a.claim("late") == []  # a split search is never claimed whole
    # one shard index at a time, both searches' in one walk, by two workers
    held = {"a-0": a.claim_shards("a-0"), "b-1": b.claim_shards("b-1")}
    held["a-2"] = a.claim_shards("a-2")
    assert b.claim_shards("b-3") == []  # every shard is held
    assert all(len(shard_ids) == 2 for shard_ids in held.values())
    threads = [
        threading.Thread(target=(a if owner[0] == "a" else b)._compute_shards, args=(owner, ids_))
        for owner, ids_ in held.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(str(shard) for _, shard in walks) == ["0/3", "1/3", "2/3"]
    assert all(tables == 2 for tables, _ in walks)
    for device, search_id in ids.items():
        row = _row(service, search_id)
        assert (row.status, row.error) == (DONE, None), row.error
        shards = _shards(service, search_id)
        assert {s.lease_owner for s in shards} == {"a-0", "b-1", "a-2"}
        assert [(s.status, s.attempts) for s in shards] == [(DONE, 1)] * SHARDS
        alone = _unsharded(service, device)
        assert sum(s.configs_evaluated for s in shards) == alone.configs_evaluated
        assert row.configs_evaluated == alone.configs_evaluated
        _assert_same_front(_stored_front(service, row.front_sha256, tmp_path), alone)
        r = _search(service, device, 0)
        assert r.status_code == 200, r.text
        assert r.json()["front"] == [p.to_json() for p in alone.front_2d()]
        view = service["client"].get(f"/v1/searches/{search_id}", headers=service["h"]).json()
        assert (view["status"], view["shards"], view["shards_done"]) == (DONE, SHARDS, SHARDS)
    assert finished == Counter(ids.values())  # each search stored once


@pytest.mark.parametrize(
    "app_settings", [{"search_workers": 2, "search_shards": SHARDS, "search_batch_window": 0.5}]
)
def test_the_embedded_workers_answer_a_sharded_search_with_the_unsharded_front(
    service: dict[str, Any],
) -> None:
    first = _search(service, "phone", 0)
    answers = {d: _search(service, d, 30) for d in DEVICES}
    for device, r in answers.items():
        assert r.status_code == 200, r.text
        assert r.json()["front"] == [p.to_json() for p in _unsharded(service, device).front_2d()]
    row = _row(service, first.json()["search_id"])
    assert row.shards == SHARDS
    assert [s.status for s in _shards(service, row.id)] == [DONE] * SHARDS


def test_an_expired_shard_lease_is_claimed_again_and_the_search_finishes_once(
    service: dict[str, Any], tmp_path: Path
) -> None:
    search_id = _search(service, "phone", 0).json()["search_id"]
    finished: Counter[int] = Counter()
    a = _worker(service, finished, lease_seconds=2.0)
    b = _worker(service, finished, lease_seconds=2.0)
    a._compute("splitter", a.claim("splitter"))
    (lost,) = a.claim_shards("worker-a")  # a is killed while computing it: no renewals
    for owner in ("worker-b-1", "worker-b-2"):
        b._compute_shards(owner, b.claim_shards(owner))
    assert b.claim_shards("worker-b") == []  # a's lease still holds
    assert _row(service, search_id).status == RUNNING
    time.sleep(2.2)
    assert b.claim_shards("worker-b-3") == [lost]
    b._compute_shards("worker-b-3", [lost])
    done = _row(service, search_id)
    assert (done.status, done.error) == (DONE, None)
    shard = next(s for s in _shards(service, search_id) if s.id == lost)
    assert (shard.status, shard.lease_owner, shard.attempts) == (DONE, "worker-b-3", 2)
    a._compute_shards("worker-a", [lost])  # a comes back and finishes late: discarded
    assert next(s for s in _shards(service, search_id) if s.id == lost).lease_owner == "worker-b-3"
    late = _row(service, search_id)
    assert (late.front_sha256, late.updated_at) == (done.front_sha256, done.updated_at)
    assert finished == Counter([search_id])
    _assert_same_front(
        _stored_front(service, done.front_sha256, tmp_path), _unsharded(service, "phone")
    )


def test_two_finishers_race_to_merge_and_the_front_is_stored_once(
    service: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    search_id = _search(service, "phone", 0).json()["search_id"]
    finished: Counter[int] = Counter()
    a, b = _worker(service, finished), _worker(service, finished)
    a._compute("splitter", a.claim("splitter"))
    first = a.claim_shards("first")
    a._compute_shards("first", first)
    # the last two shards are stored at the same moment, each by its own worker, and both
    # then try to take the merge at the same moment
    for name in ("finish_shard", "claim_merge"):
        together = threading.Barrier(2, timeout=30)
        real = getattr(repository, name)

        def at_once(*args: Any, _real: Any = real, _together: Any = together, **kw: Any) -> bool:
            _together.wait()
            return bool(_real(*args, **kw))

        monkeypatch.setattr(repository, name, at_once)
    held = {"a": a.claim_shards("a"), "b": b.claim_shards("b")}
    caplog.set_level(logging.INFO, logger="service.searches.worker")
    threads = [
        threading.Thread(target=w._compute_shards, args=(owner, held[owner]))
        for owner, w in (("a", a), ("b", b))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    row = _row(service, search_id)
    assert (row.status, row.error) == (DONE, None)
    assert finished == Counter([search_id])
    assert caplog.text.count(f"search {search_id} stored") == 1, caplog.text


def test_a_merge_whose_worker_died_is_taken_over_after_its_lease(
    service: dict[str, Any], tmp_path: Path
) -> None:
    search_id = _search(service, "phone", 0).json()["search_id"]
    finished: Counter[int] = Counter()
    a = _worker(service, finished, lease_seconds=2.0)
    b = _worker(service, finished, lease_seconds=2.0)
    merging: list[str] = []
    # a dies right after claiming the merge (no renewal, no outcome)
    a._merge = lambda owner, _search_id: merging.append(owner)  # type: ignore[method-assign]
    a._compute("splitter", a.claim("splitter"))
    for i in range(SHARDS):
        a._compute_shards(f"a-{i}", a.claim_shards(f"a-{i}"))
    (dead,) = merging
    row = _row(service, search_id)
    assert (row.status, row.lease_owner) == (RUNNING, dead)
    assert b.claim_merge("b") is None  # held
    time.sleep(2.2)
    assert b.run_once()  # the due merge comes first
    done = _row(service, search_id)
    assert (done.status, done.error) == (DONE, None)
    assert done.lease_owner != dead
    SearchWorker._merge(a, dead, search_id)  # a comes back: its merge is discarded
    late = _row(service, search_id)
    assert (late.front_sha256, late.updated_at) == (done.front_sha256, done.updated_at)
    assert finished == Counter([search_id])
    _assert_same_front(
        _stored_front(service, done.front_sha256, tmp_path), _unsharded(service, "phone")
    )


def test_a_failing_shard_fails_the_search_with_its_error(service: dict[str, Any]) -> None:
    search_id = _search(service, "phone", 0).json()["search_id"]
    finished: Counter[int] = Counter()
    a = _worker(service, finished)
    a._compute("splitter", a.claim("splitter"))
    with transaction(service["state"].sessionmaker) as session:
        stats_sha = get_supernet(session, service["sid"]).stats_sha256
    service["state"].blobs.delete(stats_sha)  # the statistics are gone from the blob store
    owner = "worker-a"
    a._compute_shards(owner, a.claim_shards(owner))
    row = _row(service, search_id)
    assert row.status == FAILED
    assert row.error.startswith("shard 0/3: BlobNotFound"), row.error
    assert [s.status for s in _shards(service, search_id)] == [FAILED] * SHARDS
    assert a.claim_shards("worker-b") == []
    assert finished == Counter([search_id])
    r = _search(service, "phone", 0)
    assert r.status_code == 422, r.text
    assert "the search failed: shard 0/3: BlobNotFound" in r.text


def test_a_space_below_the_threshold_is_computed_whole(service: dict[str, Any]) -> None:
    stats, table = service["stats"], service["tables"]["phone"]
    size = SearchSpace(Problem(stats, table)).size()
    search_id = _search(service, "phone", 0).json()["search_id"]
    whole = _worker(service, shard_min_configs=size + 1)
    whole._compute("a", whole.claim("a"))
    row = _row(service, search_id)
    assert (row.status, row.shards) == (DONE, None)
    assert _shards(service, search_id) == []
    r = _search(service, "board", 0)
    split = _worker(service, shard_min_configs=size)
    split._compute("b", split.claim("b"))
    assert _row(service, r.json()["search_id"]).shards == SHARDS


def test_one_shard_is_todays_whole_search(service: dict[str, Any]) -> None:
    assert Settings().search_shards == 1
    search_id = _search(service, "phone", 0).json()["search_id"]
    worker = _worker(service, shards=1)
    worker._compute("a", worker.claim("a"))
    row = _row(service, search_id)
    assert (row.status, row.shards, row.lease_owner) == (DONE, None, "a")
    assert _shards(service, search_id) == []
    view = service["client"].get(f"/v1/searches/{search_id}", headers=service["h"]).json()
    assert (view["shards"], view["shards_done"]) == (None, None)


def test_a_stopping_worker_hands_its_shards_back(service: dict[str, Any]) -> None:
    search_id = _search(service, "phone", 0).json()["search_id"]
    worker = _worker(service)
    worker._compute("splitter", worker.claim("splitter"))
    shard_ids = worker.claim_shards("worker-a")
    worker.held_shards["worker-a"] = shard_ids  # as run_once records it while it computes
    worker.stop(timeout=0)
    shard = next(s for s in _shards(service, search_id) if s.id == shard_ids[0])
    assert (shard.status, shard.lease_owner) == (QUEUED, None)
    assert _worker(service).claim_shards("worker-b") == shard_ids  # at once, not after a lease
