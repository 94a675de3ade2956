"""The profiling job queue: creation, leases, heartbeats, results, failures, pools."""

from __future__ import annotations

import datetime as dt
import statistics
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.auth.service import Principal
from service.db import transaction
from service.jobs import service as jobs
from service.jobs.models import Job
from tests.service.conftest import auth


def _push(client: TestClient, tokens: dict[str, str], bundle: Path) -> str:
    files = {"bundle": ("b.mess", bundle.read_bytes(), "application/zip")}
    r = client.post("/v1/supernets", files=files, headers=auth(tokens["engineer"]))
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def _register(client: TestClient, tokens: dict[str, str], name: str = "dev", **attrs: Any) -> None:
    r = client.post("/v1/devices", json={"name": name, **attrs}, headers=auth(tokens["agent"]))
    assert r.status_code in (200, 201), r.text


def _lease(client: TestClient, tokens: dict[str, str], device: str = "dev") -> dict[str, Any]:
    r = client.post("/v1/jobs/lease", json={"device": device}, headers=auth(tokens["agent"]))
    assert r.status_code == 200, r.text
    return dict(r.json()["job"])


def _timings(client: TestClient, tokens: dict[str, str], sid: str) -> dict[str, list[float]]:
    parts = client.get(f"/v1/supernets/{sid}", headers=auth(tokens["agent"])).json()["parts"]
    return {p["name"]: [1.0 + i, 2.0 + i, 1.5 + i] for i, p in enumerate(parts)}


@pytest.fixture
def queued(client: TestClient, tokens: dict[str, str], bundle_file: Path) -> str:
    sid = _push(client, tokens, bundle_file)
    _register(client, tokens)
    return sid


def test_a_job_is_created_when_a_device_registers_and_when_a_supernet_is_pushed(
    client: TestClient, tokens: dict[str, str], bundle_file: Path
) -> None:
    _register(client, tokens, "early")
    sid = _push(client, tokens, bundle_file)
    _register(client, tokens, "late")
    listed = client.get("/v1/jobs", headers=auth(tokens["engineer"])).json()["items"]
    assert sorted((j["device"], j["status"]) for j in listed) == [
        ("early", "queued"),
        ("late", "queued"),
    ]
    assert {j["supernet_id"] for j in listed} == {sid}
    _push(client, tokens, bundle_file)  # idempotent re-upload: no new jobs
    assert len(client.get("/v1/jobs", headers=auth(tokens["agent"])).json()["items"]) == 2


def test_lease_heartbeat_and_result_make_one_profile_version(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    h = auth(tokens["agent"])
    job = _lease(client, tokens)
    assert job["supernet_id"] == queued and job["configurations"][0]["terminal"] == "final"
    r = client.post("/v1/jobs/lease", json={"device": "dev"}, headers=h)
    assert r.status_code == 204  # the pool never gets the same job twice
    beat = client.post(
        f"/v1/jobs/{job['id']}/heartbeat", json={"lease_id": job["lease_id"]}, headers=h
    )
    assert beat.status_code == 200 and beat.json()["status"] == "leased"
    timings = _timings(client, tokens, queued)
    body = {"lease_id": job["lease_id"], "timings": timings, "context": {"threads": 1}}
    r = client.post(f"/v1/jobs/{job['id']}/result", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["job"]["status"] == "done" and r.json()["version"] == 1
    profile = client.get(f"/v1/profiles/{r.json()['profile_id']}", headers=h).json()
    assert profile["costs"]["unit"] == "ms" and profile["costs"]["statistic"] == "median"
    assert profile["costs"]["heads"]["final"] == statistics.median(timings["head/final"])
    again = client.post(f"/v1/jobs/{job['id']}/result", json=body, headers=h)
    assert again.status_code == 200 and again.json()["profile_id"] == r.json()["profile_id"]
    versions = client.get(
        "/v1/profiles", params={"supernet_id": queued, "device": "dev"}, headers=h
    ).json()["items"]
    assert len(versions) == 1


def test_a_wrong_lease_id_is_a_conflict(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    job = _lease(client, tokens)
    r = client.post(
        f"/v1/jobs/{job['id']}/heartbeat", json={"lease_id": "nope"}, headers=auth(tokens["agent"])
    )
    assert r.status_code == 409 and "lease" in r.json()["detail"]


def _expire(client: TestClient, job_id: int) -> None:
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))
        session.commit()


def test_an_expired_lease_is_queued_again_and_the_old_lease_is_refused(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    h = auth(tokens["agent"])
    first = _lease(client, tokens)
    _expire(client, first["id"])
    second = _lease(client, tokens)  # the killed agent's job goes to the pool again
    assert second["id"] == first["id"] and second["lease_id"] != first["lease_id"]
    body = {"lease_id": first["lease_id"], "timings": _timings(client, tokens, queued)}
    assert client.post(f"/v1/jobs/{first['id']}/result", json=body, headers=h).status_code == 409
    listed = client.get(f"/v1/jobs/{first['id']}", headers=h).json()
    assert listed["attempts"] == 1 and listed["status"] == "leased"


def test_failures_are_retried_a_bounded_number_of_times_and_keep_the_error(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    h = auth(tokens["agent"])
    for attempt in range(1, 4):
        job = _lease(client, tokens)
        r = client.post(
            f"/v1/jobs/{job['id']}/fail",
            json={"lease_id": job["lease_id"], "error": f"boom {attempt}"},
            headers=h,
        )
        assert r.status_code == 200
    final = r.json()
    assert final["status"] == "failed" and final["attempts"] == 3 and final["error"] == "boom 3"
    assert client.post("/v1/jobs/lease", json={"device": "dev"}, headers=h).status_code == 204


def test_release_queues_the_job_without_counting_an_attempt(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    h = auth(tokens["agent"])
    job = _lease(client, tokens)
    r = client.post(f"/v1/jobs/{job['id']}/release", json={"lease_id": job["lease_id"]}, headers=h)
    assert r.json()["status"] == "queued" and r.json()["attempts"] == 0
    assert _lease(client, tokens)["id"] == job["id"]


def test_results_missing_parts_or_with_bad_numbers_are_refused(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    h = auth(tokens["agent"])
    job = _lease(client, tokens)
    timings = _timings(client, tokens, queued)
    missing = dict(list(timings.items())[1:])
    r = client.post(
        f"/v1/jobs/{job['id']}/result",
        json={"lease_id": job["lease_id"], "timings": missing},
        headers=h,
    )
    assert r.status_code == 422 and "no timings for part" in r.json()["detail"]
    timings["head/final"] = [-1.0]
    r = client.post(
        f"/v1/jobs/{job['id']}/result",
        json={"lease_id": job["lease_id"], "timings": timings},
        headers=h,
    )
    assert r.status_code == 422
    assert client.get(f"/v1/jobs/{job['id']}", headers=h).json()["status"] == "leased"


def test_a_new_runtime_version_queues_the_device_again(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    h = auth(tokens["agent"])
    job = _lease(client, tokens)
    body = {"lease_id": job["lease_id"], "timings": _timings(client, tokens, queued)}
    assert client.post(f"/v1/jobs/{job['id']}/result", json=body, headers=h).status_code == 200
    _register(client, tokens, runtime_version="9.9.9")
    assert client.get(f"/v1/jobs/{job['id']}", headers=h).json()["status"] == "queued"


def test_unknown_jobs_and_devices_are_404(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["agent"])
    assert client.get("/v1/jobs/999", headers=h).status_code == 404
    assert client.post("/v1/jobs/lease", json={"device": "ghost"}, headers=h).status_code == 404
    assert client.get("/v1/jobs").status_code == 401


def test_a_pool_of_agents_racing_never_runs_a_job_twice(
    client: TestClient, tokens: dict[str, str], bundle_file: Path, tmp_path: Path
) -> None:
    from tests.service.factories import make_bundle

    for i in range(6):
        _push(client, tokens, make_bundle(tmp_path / f"b{i}.mess", name=f"b{i}"))
    _register(client, tokens)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    # as the lease route does: a write transaction per lease (on SQLite: BEGIN IMMEDIATE)
    maker = client.app.state.write_sessionmaker  # type: ignore[attr-defined]
    got: list[list[int]] = [[], [], []]
    agent = Principal(token_id=None, name="pool", role="agent")

    def work(slot: int) -> None:
        while True:
            with transaction(maker) as session:
                job = jobs.lease(session, settings, "dev", agent)
            if job is None:
                return
            got[slot].append(job.id)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    leased = [j for slot in got for j in slot]
    assert len(leased) == 6 and len(set(leased)) == 6
