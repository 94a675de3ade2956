"""Search workers: leases (one outcome per search), the batch window and fleet batching."""

from __future__ import annotations

import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mess.costs import parse_costs
from mess.search import compute_front
from mess.stats import load_stats
from service.db import transaction
from service.searches import repository
from service.searches import worker as search_worker
from service.searches.models import DONE, QUEUED, RUNNING
from service.searches.worker import SearchWorker
from service.settings import Settings
from tests.service.conftest import app_with, auth
from tests.service.factories import costs_table

SCALES = {"phone": 3.0, "board": 0.5}  # two devices, cost tables priced apart


@pytest.fixture
def worker_settings() -> dict[str, Any]:
    """The app's settings changed by a test (parametrize it): by default no embedded
    worker, the tests drive :class:`SearchWorker` themselves."""
    return {"embedded_worker": False}


@pytest.fixture
def fleet(
    settings: Settings, bundle_file: Path, tmp_path: Path, worker_settings: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """A supernet profiled on two devices."""
    for client in app_with(settings, **worker_settings):
        admin = auth("test-admin-token-0123456789")
        tokens = {}
        for role in ("engineer", "agent"):
            r = client.post("/v1/tokens", json={"name": role, "role": role}, headers=admin)
            tokens[role] = auth(r.json()["token"])
        files = {"bundle": ("b.mess", bundle_file.read_bytes(), "application/zip")}
        r = client.post("/v1/supernets", files=files, headers=tokens["engineer"])
        sid = r.json()["id"]
        for device, scale in SCALES.items():
            client.post("/v1/devices", json={"name": device}, headers=tokens["agent"])
            costs = costs_table("ms", scale=scale)
            r = client.post(
                "/v1/profiles",
                json={"supernet_id": sid, "device": device, "costs": costs},
                headers=tokens["agent"],
            )
            assert r.status_code == 201, r.text
        with zipfile.ZipFile(bundle_file) as zf:
            (tmp_path / "stats.npz").write_bytes(zf.read("stats.npz"))
        yield {
            "client": client,
            "sid": sid,
            "h": tokens["engineer"],
            "stats": load_stats(tmp_path / "stats.npz"),
            "state": client.app.state,  # type: ignore[attr-defined]
        }


def _search(fleet: dict[str, Any], device: str, wait: float) -> Any:
    body = {"supernet_id": fleet["sid"], "device": device, "objective": "pareto"}
    return fleet["client"].post(
        "/v1/search", json={**body, "wait_seconds": wait}, headers=fleet["h"]
    )


def _worker(fleet: dict[str, Any], **kwargs: Any) -> SearchWorker:
    state = fleet["state"]
    return SearchWorker(state.write_sessionmaker, state.blobs, 0, **kwargs)


def _row(fleet: dict[str, Any], search_id: int) -> Any:
    with transaction(fleet["state"].sessionmaker) as session:
        row = repository.get(session, search_id)
        assert row is not None
        session.expunge(row)
        return row


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """Each walk of a space the workers make: its number of cost tables and when it began
    (``time.monotonic``)."""
    calls: list[tuple[int, float]] = []
    real = search_worker.compute_fronts

    def counted(stats: Any, tables: Any, **kwargs: Any) -> Any:
        calls.append((len(tables), time.monotonic()))
        return real(stats, tables, **kwargs)

    monkeypatch.setattr(search_worker, "compute_fronts", counted)
    return calls


@pytest.mark.parametrize("worker_settings", [{"search_batch_window": 1.5}])
def test_two_profiles_queued_together_cost_one_walk_and_get_their_own_fronts(
    fleet: dict[str, Any], walks: list[int]
) -> None:
    first = _search(fleet, "phone", 0)
    second = _search(fleet, "board", 0)
    assert first.status_code == second.status_code == 202, first.text
    answers = {d: _search(fleet, d, 30) for d in SCALES}
    assert [n for n, _ in walks] == [2]  # one enumeration for both devices
    for device, scale in SCALES.items():
        r = answers[device]
        assert r.status_code == 200, r.text
        alone = compute_front(fleet["stats"], parse_costs(costs_table("ms", scale=scale)))
        assert r.json()["front"] == [p.to_json() for p in alone.front_2d()]
        row = _row(fleet, r.json()["search_id"])
        assert (row.status, row.error) == (DONE, None)
        assert row.configs_evaluated == alone.configs_evaluated


@pytest.mark.parametrize("worker_settings", [{"search_batch_window": 1.0}])
def test_a_lone_search_waits_the_window_and_no_longer(
    fleet: dict[str, Any], walks: list[tuple[int, float]]
) -> None:
    start = time.monotonic()
    r = _search(fleet, "phone", 30)
    assert r.status_code == 200, r.text
    ((tables, began),) = walks
    held = began - start
    # the window, then at most one poll of the idle worker (and a busy machine's slack)
    assert tables == 1
    assert 0.9 <= held < 1.0 + search_worker.POLL_SECONDS + 2.0, held


def test_a_search_is_not_claimed_before_its_window(fleet: dict[str, Any]) -> None:
    search_id = _search(fleet, "phone", 0).json()["search_id"]
    assert _worker(fleet, batch_window=3600).claim("a") == []
    assert _worker(fleet, batch_window=0).claim("b") == [search_id]


def test_searches_of_other_options_are_not_batched(fleet: dict[str, Any]) -> None:
    phone = _search(fleet, "phone", 0).json()["search_id"]
    body = {"supernet_id": fleet["sid"], "device": "board", "objective": "pareto"}
    r = fleet["client"].post(
        "/v1/search", json={**body, "max_exits": 1, "wait_seconds": 0}, headers=fleet["h"]
    )
    board = r.json()["search_id"]
    worker = _worker(fleet, batch_window=0)
    assert worker.claim("a") == [phone]
    assert worker.claim("b") == [board]


def test_an_expired_lease_passes_the_search_on_and_only_the_holder_stores_it(
    fleet: dict[str, Any],
) -> None:
    search_id = _search(fleet, "phone", 0).json()["search_id"]
    a = _worker(fleet, lease_seconds=3.0, batch_window=0)
    b = _worker(fleet, lease_seconds=3.0, batch_window=0)
    assert a.claim("worker-a") == [search_id]
    assert b.claim("worker-b") == []  # held
    row = _row(fleet, search_id)
    assert (row.status, row.lease_owner) == (RUNNING, "worker-a")
    time.sleep(3.2)  # a stopped renewing (killed): its lease expires
    assert b.claim("worker-b") == [search_id]
    b._compute("worker-b", [search_id])
    done = _row(fleet, search_id)
    assert (done.status, done.lease_owner, done.error) == (DONE, "worker-b", None)
    a._compute("worker-a", [search_id])  # a comes back and finishes late: discarded
    late = _row(fleet, search_id)
    assert (late.front_sha256, late.updated_at) == (done.front_sha256, done.updated_at)
    assert late.lease_owner == "worker-b"


def test_a_running_search_keeps_its_lease_while_it_computes(
    fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = search_worker.compute_fronts

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(7.0)  # longer than the lease: only the renewals keep it
        return real(*args, **kwargs)

    monkeypatch.setattr(search_worker, "compute_fronts", slow)
    search_id = _search(fleet, "phone", 0).json()["search_id"]
    a = _worker(fleet, lease_seconds=3.0, batch_window=0)
    b = _worker(fleet, lease_seconds=3.0, batch_window=0)
    assert a.claim("worker-a") == [search_id]
    taken: list[list[int]] = []
    monkeypatch.setattr(search_worker, "compute_fronts", slow)
    thread = threading.Thread(target=a._compute, args=("worker-a", [search_id]))
    thread.start()
    while thread.is_alive():
        taken.append(b.claim("worker-b"))
        time.sleep(0.2)
    thread.join()
    assert not any(taken)
    row = _row(fleet, search_id)
    assert (row.status, row.lease_owner) == (DONE, "worker-a")


def test_a_stopping_worker_hands_its_search_back(fleet: dict[str, Any]) -> None:
    search_id = _search(fleet, "phone", 0).json()["search_id"]
    worker = _worker(fleet, batch_window=0)
    ids = worker.claim("worker-a")
    worker.held["worker-a"] = ids  # as run_once records it while it computes
    worker.stop(timeout=0)
    row = _row(fleet, search_id)
    assert (row.status, row.lease_owner) == (QUEUED, None)


def test_an_api_only_replica_leaves_searches_queued(
    fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = _search(fleet, "phone", 1.0)
    assert r.status_code == 202, r.text
    assert _row(fleet, r.json()["search_id"]).status == QUEUED
    assert fleet["state"].search_worker.pool == []
    monkeypatch.setenv("MESS_EMBEDDED_WORKER", "0")  # what mess serve --no-worker sets
    assert Settings().embedded_worker is False


def test_a_search_left_running_without_a_lease_is_claimable(fleet: dict[str, Any]) -> None:
    """A search a worker of a version without leases was computing when it stopped."""
    search_id = _search(fleet, "phone", 0).json()["search_id"]
    with transaction(fleet["state"].write_sessionmaker) as session:
        row = repository.get(session, search_id)
        assert row is not None
        row.status, row.lease_owner, row.lease_expires_at = RUNNING, None, None
    assert _worker(fleet, batch_window=3600).claim("worker-b") == [search_id]
