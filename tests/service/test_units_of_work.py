"""Units of work: services only flush (the caller's transaction commits or rolls back),
get-or-create is race-free across sessions, and a request waiting for a search is woken by
the worker that finishes it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.auth.service import Principal
from service.configurations import service as configurations
from service.configurations.models import Configuration
from service.db import transaction
from service.devices import service as devices
from service.devices.models import Device
from service.devices.schemas import DeviceCreate
from service.jobs import service as jobs
from service.jobs.models import Job
from service.profiles import service as profiles
from service.profiles.models import Profile
from service.profiles.schemas import ProfileCreate
from service.searches import routes as search_routes
from service.searches import service as searches
from service.searches import worker as search_worker
from service.searches.finished import FinishedSearches
from service.searches.models import Search
from service.searches.schemas import SearchRequest
from service.settings import Settings
from service.supernets import service as supernets
from service.supernets.models import Supernet, SupernetPart
from tests.service.conftest import auth, blob_files
from tests.service.factories import costs_table

AGENT = Principal(None, "agent", "agent")
ENGINEER = Principal(None, "engineer", "engineer")
TABLES = (Supernet, SupernetPart, Device, Job, Profile, Search, Configuration)


def _counts(session: Session) -> dict[str, int]:
    return {
        t.__tablename__: int(session.scalar(select(func.count()).select_from(t)) or 0)
        for t in TABLES
    }


def test_services_leave_the_commit_to_the_unit_of_work(
    client: TestClient, settings: Settings, bundle_file: Path
) -> None:
    """Every write of a push, a registration, a profile, a search and an answer, then an
    error: the rollback leaves no row and no blob behind (no service committed on its own)."""
    state = client.app.state  # type: ignore[attr-defined]
    with (
        pytest.raises(RuntimeError, match="a later step"),
        transaction(state.write_sessionmaker) as session,
    ):
        supernet, created = supernets.store_bundle(
            session, state.blobs, settings, bundle_file, ENGINEER
        )
        assert created
        jobs.ensure_for_supernet(session, supernet.id)
        device = devices.register(session, DeviceCreate(name="dev"), AGENT).device
        jobs.ensure_for_device(session, device.id)
        data = ProfileCreate(supernet_id=supernet.id, device="dev", costs=costs_table("ms"))
        profiles.create_profile(session, state.blobs, data, AGENT)
        request = SearchRequest(supernet_id=supernet.id, device="dev", objective="pareto")
        searches.request_search(session, request, ENGINEER)
        configuration = {"exits": [], "terminal": "final"}
        configurations.get_or_create(session, supernet.id, configuration, {})
        assert all(_counts(session).values()), _counts(session)  # all were written
        assert blob_files(settings)
        raise RuntimeError("a later step of the request fails")
    with state.sessionmaker() as session:
        assert not any(_counts(session).values()), _counts(session)
    assert blob_files(settings) == []


@pytest.mark.parametrize("first_commits", [True, False], ids=["commits", "rolls-back"])
def test_get_or_create_in_two_racing_sessions_makes_one_row(
    client: TestClient, first_commits: bool
) -> None:
    """The second insert of a name waits for the first transaction, then finds its row (or,
    when that rolled back, inserts its own): never an IntegrityError, never two rows."""
    maker = client.app.state.write_sessionmaker  # type: ignore[attr-defined]
    got: dict[str, Any] = {}

    def second() -> None:
        try:
            with transaction(maker) as session:
                registration = devices.register(session, DeviceCreate(name="racer"), AGENT)
                got["created"], got["id"] = registration.created, registration.device.id
        except BaseException as exc:  # reported by the assertions below
            got["error"] = exc

    with maker() as first:
        ours = devices.register(first, DeviceCreate(name="racer"), AGENT)
        assert ours.created
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for our transaction
        if first_commits:
            first.commit()
        else:
            first.rollback()
    thread.join(30)
    assert "error" not in got, got
    assert got["created"] is not first_commits
    if first_commits:
        assert got["id"] == ours.device.id
    with maker() as session:
        assert session.scalar(select(func.count()).select_from(Device)) == 1


def test_finished_searches_wake_the_waiters_of_that_search_only() -> None:
    finished = FinishedSearches()

    async def main() -> None:
        with finished.watch(1) as one, finished.watch(2) as two:
            threading.Timer(0.05, finished.notify, args=(1,)).start()
            await asyncio.wait_for(one.wait(), 5)
            assert not two.is_set()
        assert len(finished) == 0

    asyncio.run(main())


@pytest.fixture
def slow_search(
    client: TestClient, tokens: dict[str, str], bundle_file: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A stored supernet whose first search takes a second, and waiting requests that
    re-check the database only every two minutes."""
    h = auth(tokens["engineer"])
    files = {"bundle": ("b.mess", bundle_file.read_bytes(), "application/zip")}
    sid = client.post("/v1/supernets", files=files, headers=h).json()["id"]
    compute = search_worker.compute_fronts

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)
        return compute(*args, **kwargs)

    monkeypatch.setattr(search_worker, "compute_fronts", slow)
    monkeypatch.setattr(search_routes, "RECHECK_SECONDS", 120.0)
    return {"body": {"supernet_id": sid, "device": "gflops", "objective": "pareto"}, "h": h}


def test_a_waiting_search_is_answered_when_the_worker_finishes_it(
    client: TestClient, slow_search: dict[str, Any]
) -> None:
    start = time.monotonic()
    r = client.post(
        "/v1/search", json={**slow_search["body"], "wait_seconds": 60}, headers=slow_search["h"]
    )
    assert r.status_code == 200, r.text
    assert time.monotonic() - start < 30  # woken by the worker, not by a re-check
    assert len(client.app.state.finished_searches) == 0  # type: ignore[attr-defined]


def test_a_search_not_done_within_the_wait_is_202_then_answered(
    client: TestClient, slow_search: dict[str, Any]
) -> None:
    body, h = slow_search["body"], slow_search["h"]
    r = client.post("/v1/search", json={**body, "wait_seconds": 0.1}, headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("queued", "running")
    again = client.post("/v1/search", json={**body, "wait_seconds": 60}, headers=h)
    assert again.status_code == 200, again.text
    assert again.json()["search_id"] == r.json()["search_id"]
