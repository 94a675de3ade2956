"""Two real ``mess worker`` processes; the one computing a search (or, with the search split
into shards, one of its shards) is SIGKILLed: the other takes the work over once the lease
has expired and stores the search once (SQLite, PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from mess.costs import save_costs
from mess.testing import random_costs, random_stats
from service.app import create_app
from service.searches.models import DONE, RUNNING, Search, SearchShard
from service.settings import Settings
from tests.e2e.conftest import ADMIN, BIN
from tests.service.factories import make_bundle, space_of
from tests.waiting import wait_until

LEASE_SECONDS = "2"


def _queue_search(data_dir: Path, db_url: str, bundle: Path) -> int:
    """Push ``bundle``, profile one device and queue its search, on an API-only app."""
    settings = Settings(
        data_dir=data_dir, database_url=db_url, admin_token=ADMIN, embedded_worker=False
    )
    with TestClient(create_app(settings)) as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        files = {"bundle": ("big.mess", bundle.read_bytes(), "application/zip")}
        r = client.post("/v1/supernets", files=files, headers=admin)
        assert r.status_code in (200, 201), r.text
        sid = r.json()["id"]
        assert client.post("/v1/devices", json={"name": "phone"}, headers=admin).is_success
        costs = json.loads((data_dir.parent / "costs.json").read_text())
        r = client.post(
            "/v1/profiles",
            json={"supernet_id": sid, "device": "phone", "costs": costs},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        body = {"supernet_id": sid, "device": "phone", "objective": "pareto", "wait_seconds": 0}
        r = client.post("/v1/search", json=body, headers=admin)
        assert r.status_code == 202, r.text
        return int(r.json()["search_id"])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mess.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def big_bundle(tmp_path: Path) -> Path:
    """A supernet of 8 x 8 exits and 100 samples: its search takes seconds."""
    stats = random_stats(positions=8, heads=8, num_samples=100, num_classes=8, seed=3)
    stats.meta["supernet"] = hashlib.sha256(b"failover supernet").hexdigest()
    save_costs(random_costs(stats, unit="ms", seed=1), tmp_path / "costs.json")
    return make_bundle(
        tmp_path / "big.mess", "big", space_of(stats, random_costs(stats, unit="gflops"))
    )


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc, _log in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def _start_worker(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], Path]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "mess"), "worker", "--threads", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


@pytest.mark.parametrize("shards", [1, 2], ids=["whole", "sharded"])
def test_a_killed_workers_search_is_finished_once_by_another(
    db_url: str, big_bundle: Path, tmp_path: Path, workers: list[Any], shards: int
) -> None:
    data_dir = tmp_path / "data"
    search_id = _queue_search(data_dir, db_url, big_bundle)
    env = {
        **os.environ,
        "MESS_DATA_DIR": str(data_dir),
        "MESS_DATABASE_URL": db_url,
        "MESS_SEARCH_LEASE_SECONDS": LEASE_SECONDS,
        "MESS_SEARCH_BATCH_WINDOW": "0",
        "MESS_SEARCH_SHARDS": str(shards),
        "MESS_LOG_LEVEL": "INFO",
    }
    for i in range(2):
        workers.append(_start_worker(env, tmp_path / f"worker-{i}.log"))
    pids = {proc.pid: (proc, log) for proc, log in workers}
    engine = create_engine(db_url)

    columns = (Search.status, Search.lease_owner, Search.error, Search.front_sha256)

    def row() -> Any:
        with engine.connect() as conn:
            return conn.execute(select(*columns).where(Search.id == search_id)).one()

    def logs() -> str:
        return "\n".join(f"--- {log}\n{log.read_text()[-3000:]}" for _, log in workers)

    def shard_rows() -> list[Any]:
        query = select(SearchShard.id, SearchShard.status, SearchShard.lease_owner)
        with engine.connect() as conn:
            return list(conn.execute(query.where(SearchShard.search_id == search_id)))

    def running() -> tuple[int | None, str] | None:
        """(shard id or None for the search, its lease owner) of work being computed."""
        if shards == 1:
            return (None, row().lease_owner) if row().status == RUNNING else None
        held = [(r.id, r.lease_owner) for r in shard_rows() if r.status == RUNNING]
        return held[0] if held else None

    try:
        item, held = wait_until(running, timeout=120, interval=0.05, message=logs)
        holder = int(held.split(":")[1])
        assert holder in pids, (held, list(pids))
        os.kill(holder, signal.SIGKILL)
        pids[holder][0].wait(timeout=30)
        assert row().status == RUNNING, "the search ended before the kill: make it bigger"
        if item is not None:
            (status,) = [r.status for r in shard_rows() if r.id == item]
            assert status == RUNNING, "the shard ended before the kill: make it bigger"
        done = wait_until(
            lambda: row() if row().status == DONE else None,
            timeout=240,
            interval=0.2,
            message=logs,
        )
        (survivor,) = set(pids) - {holder}
        assert int(done.lease_owner.split(":")[1]) == survivor
        assert done.error is None and done.front_sha256 is not None
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Search)) == 1
        if shards > 1:  # the survivor took the killed worker's shard over, and merged
            assert sorted(r.status for r in shard_rows()) == [DONE] * shards
            (owner,) = [r.lease_owner for r in shard_rows() if r.id == item]
            assert int(owner.split(":")[1]) == survivor
        assert logs().count(f"search {search_id} stored") == 1, logs()
        assert pids[survivor][0].poll() is None  # still serving the queue
    finally:
        engine.dispose()


def test_a_worker_stopped_mid_search_exits_and_hands_the_search_back(
    big_bundle: Path, tmp_path: Path, workers: list[Any]
) -> None:
    db_url = f"sqlite:///{tmp_path / 'mess.db'}"
    data_dir = tmp_path / "data"
    search_id = _queue_search(data_dir, db_url, big_bundle)
    env = {
        **os.environ,
        "MESS_DATA_DIR": str(data_dir),
        "MESS_DATABASE_URL": db_url,
        "MESS_SEARCH_BATCH_WINDOW": "0",
    }
    workers.append(_start_worker(env, tmp_path / "worker.log"))
    proc, log = workers[0]
    engine = create_engine(db_url)
    try:

        def status() -> Any:
            with engine.connect() as conn:
                return conn.execute(
                    select(Search.status, Search.lease_owner).where(Search.id == search_id)
                ).one()

        wait_until(
            lambda: status().status == RUNNING, timeout=120, interval=0.05, message=log.read_text
        )
        proc.terminate()
        proc.wait(timeout=60)  # not the search's remaining time
        assert status().status in ("queued", DONE), log.read_text()  # handed back, or it won
        if status().status == "queued":
            assert status().lease_owner is None
    finally:
        engine.dispose()
