"""Verification jobs and verified searches over HTTP, with a fake device agent."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.jobs.models import Job
from service.verifications.latency import path_costs
from tests.service.conftest import auth
from tests.service.factories import costs_table, exits

POSITIONS = {e["id"]: e["position"] for e in exits()}


@pytest.fixture
def setup(client: TestClient, tokens: dict[str, str], bundle_file: Path) -> dict[str, Any]:
    files = {"bundle": ("b.mess", bundle_file.read_bytes(), "application/zip")}
    sid = client.post("/v1/supernets", files=files, headers=auth(tokens["engineer"])).json()["id"]
    h = auth(tokens["agent"])
    assert client.post("/v1/devices", json={"name": "dev"}, headers=h).status_code == 201
    costs = costs_table("ms", scale=2.0)
    r = client.post(
        "/v1/profiles", json={"supernet_id": sid, "device": "dev", "costs": costs}, headers=h
    )
    assert r.status_code == 201, r.text
    with zipfile.ZipFile(bundle_file) as zf:
        gflops = json.loads(zf.read("costs.json"))
    return {
        "sid": sid,
        "profile_id": r.json()["id"],
        "h": auth(tokens["engineer"]),
        "agent": h,
        "costs": costs,
        "gflops": gflops,
    }


def _search(client: TestClient, s: dict[str, Any], budget: float, **extra: Any) -> Any:
    body = {
        "supernet_id": s["sid"],
        "device": "dev",
        "objective": "max-accuracy",
        "budget_ms": budget,
        "verify": True,
        "wait_seconds": 0.2,
        **extra,
    }
    return client.post("/v1/search", json=body, headers=s["h"])


def _lease_verify(client: TestClient, s: dict[str, Any]) -> dict[str, Any] | None:
    r = client.post(
        "/v1/jobs/lease", json={"device": "dev", "kinds": ["verify"]}, headers=s["agent"]
    )
    if r.status_code == 204:
        return None
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()["job"]
    assert job["kind"] == "verify" and job["configuration_id"]
    config = client.get(f"/v1/configurations/{job['configuration_id']}", headers=s["agent"])
    # the fractions the verification is combined with, for the agent to mix its paths by
    assert job["exit_fractions"] == config.json()["metrics"]["exit_fractions"]
    return job


def _paths(client: TestClient, s: dict[str, Any], job: dict[str, Any], slow: float) -> list:
    """What a device ``slow`` times slower than its parts measures, path by path."""
    config = client.get(f"/v1/configurations/{job['configuration_id']}", headers=s["agent"])
    predicted = path_costs(s["costs"], POSITIONS, config.json()["configuration"])
    return [[slow * p * f for f in (0.99, 1.0, 1.01)] for p in predicted]


def _fake_agent(client: TestClient, s: dict[str, Any], slow: float) -> bool:
    """Run one verification job as a device ``slow`` times slower than its parts."""
    job = _lease_verify(client, s)
    if job is None:
        return False
    body = {"lease_id": job["lease_id"], "paths": _paths(client, s, job, slow), "context": {}}
    r = client.post(f"/v1/jobs/{job['id']}/verification", json=body, headers=s["agent"])
    assert r.status_code == 200, r.text
    return True


def _until_verifying(client: TestClient, s: dict[str, Any], budget: float) -> int:
    """Post a verified query until its verification job is queued (the front computed)."""
    for _ in range(200):
        r = _search(client, s, budget)
        assert r.status_code == 202, r.text
        if r.json()["status"] == "verifying":
            return int(r.json()["job_id"])
    raise AssertionError("no verification was queued")


def _queued_verification(client: TestClient, s: dict[str, Any], budget: float) -> Any:
    """Post a verified query until its verification job is queued; lease that job."""
    job_id = _until_verifying(client, s, budget)
    job = _lease_verify(client, s)
    assert job is not None and job["id"] == job_id
    return job


def _verified_query(client: TestClient, s: dict[str, Any], budget: float, slow: float) -> Any:
    for _ in range(100):
        r = _search(client, s, budget)
        if r.status_code != 202:
            return r
        _fake_agent(client, s, slow)
    raise AssertionError("the verified query never finished")


def test_a_plain_answer_is_marked_unverified(client: TestClient, setup: dict) -> None:
    r = _search(client, setup, 6.0, verify=False, wait_seconds=20)
    assert r.status_code == 200 and r.json()["verified"] is None


def test_a_device_slower_than_its_parts_ends_within_budget(client: TestClient, setup: dict) -> None:
    """30 % slower than the sum of its parts: the first choice breaks the budget, the
    correction learned from it makes the next choice fit."""
    budget = 6.0
    plain = _search(client, setup, budget, verify=False, wait_seconds=20).json()
    assert plain["expected_cost"] * 1.3 > budget  # the prediction alone would break it
    r = _verified_query(client, setup, budget, slow=1.3)
    assert r.status_code == 200, r.text
    answer = r.json()
    verified = answer["verified"]
    assert verified["expected_ms"] <= budget
    assert answer["configuration_id"] != plain["configuration_id"]
    assert verified["device"] == "dev" and verified["exit_agreement"] is None
    assert len(verified["paths_ms"]) == len(answer["exit_fractions"])
    fractions, paths = answer["exit_fractions"], verified["paths_ms"]
    expected = sum(f * t for f, t in zip(fractions, paths, strict=True))
    assert verified["expected_ms"] == pytest.approx(expected)
    assert verified["predicted_expected_ms"] == pytest.approx(answer["expected_cost"])
    # the correction is stored with the profile and priced into the answer
    profile = client.get(f"/v1/profiles/{setup['profile_id']}", headers=setup["h"]).json()
    assert profile["corrections"][-1]["scale"] == pytest.approx(1.3, rel=1e-6)
    assert answer["expected_cost"] == pytest.approx(verified["expected_ms"], rel=1e-6)
    # every verification of the first choice and the last shows on the configuration
    shown = client.get(f"/v1/configurations/{plain['configuration_id']}", headers=setup["h"])
    assert shown.json()["verifications"][0]["expected_ms"] > budget
    # later plain queries of the device use the learned correction
    again = _search(client, setup, budget, verify=False, wait_seconds=20).json()
    assert again["configuration_id"] == answer["configuration_id"]
    assert again["expected_cost"] == pytest.approx(answer["expected_cost"])
    # and a verified query of a verified configuration answers at once
    assert _search(client, setup, budget).json()["verified"]["id"] == verified["id"]


def test_nothing_fitting_is_a_422_naming_the_closest_verified_configuration(
    client: TestClient, setup: dict
) -> None:
    cheapest = 3.0  # the cut at the first exit: segment 2 + head 1
    r = _verified_query(client, setup, cheapest * 1.05, slow=2.0)
    assert r.status_code == 422, r.text
    body = r.json()
    assert "closest" in body["detail"] and body["closest"]["expected_ms"] > cheapest * 1.05
    assert body["closest"]["configuration_id"] in body["detail"]


def test_a_budget_met_by_the_prediction_and_the_device_needs_one_verification(
    client: TestClient, setup: dict
) -> None:
    assert _until_verifying(client, setup, 8.0) >= 1
    r = _verified_query(client, setup, 8.0, slow=1.0)
    assert r.status_code == 200
    assert r.json()["verified"]["expected_ms"] == pytest.approx(r.json()["expected_cost"])


def test_agents_that_do_not_name_verify_never_lease_verification_jobs(
    client: TestClient, setup: dict
) -> None:
    _until_verifying(client, setup, 8.0)
    h = setup["agent"]
    for _ in range(2):  # the profiling job of the device, then nothing
        r = client.post("/v1/jobs/lease", json={"device": "dev"}, headers=h)
        assert r.status_code in (200, 204)
        if r.status_code == 200:
            assert r.json()["job"]["kind"] == "profile"
    assert r.status_code == 204
    assert _lease_verify(client, setup) is not None


def _expire(client: TestClient, job_id: int) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    with client.app.state.sessionmaker.begin() as session:  # type: ignore[attr-defined]
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))


def test_verification_leases_expire_retry_and_results_are_idempotent(
    client: TestClient, setup: dict
) -> None:
    h = setup["agent"]
    first = _queued_verification(client, setup, 8.0)
    beat = client.post(
        f"/v1/jobs/{first['id']}/heartbeat", json={"lease_id": first["lease_id"]}, headers=h
    )
    assert beat.status_code == 200
    _expire(client, first["id"])  # the agent died: the job goes back to the pool
    second = _lease_verify(client, setup)
    assert second is not None and second["id"] == first["id"]
    assert second["lease_id"] != first["lease_id"]
    paths = _paths(client, setup, second, 1.0)
    late = {"lease_id": first["lease_id"], "paths": paths}
    url = f"/v1/jobs/{first['id']}/verification"
    assert client.post(url, json=late, headers=h).status_code == 409
    body = {"lease_id": second["lease_id"], "paths": paths}
    one = client.post(url, json=body, headers=h)
    two = client.post(url, json=body, headers=h)  # a retried upload
    assert one.status_code == two.status_code == 200
    assert one.json()["verification"]["id"] == two.json()["verification"]["id"]
    job = client.get(f"/v1/jobs/{first['id']}", headers=h).json()
    assert job["status"] == "done" and job["attempts"] == 1 and job["kind"] == "verify"
    # a profiling result is not a verification, and the other way round
    wrong = client.post(f"/v1/jobs/{first['id']}/result", json={**body, "timings": {}}, headers=h)
    assert wrong.status_code == 422


def test_a_verification_failing_for_good_is_a_clear_422(client: TestClient, setup: dict) -> None:
    h = setup["agent"]
    _until_verifying(client, setup, 8.0)
    for attempt in range(3):
        job = _lease_verify(client, setup)
        assert job is not None, attempt
        body = {"lease_id": job["lease_id"], "error": "InvalidGraph: boom"}
        assert client.post(f"/v1/jobs/{job['id']}/fail", json=body, headers=h).status_code == 200
    r = _search(client, setup, 8.0)
    assert r.status_code == 422 and "boom" in r.json()["detail"]


def test_results_with_the_wrong_number_of_paths_are_refused(
    client: TestClient, setup: dict
) -> None:
    job = _queued_verification(client, setup, 8.0)
    paths = _paths(client, setup, job, 1.0)
    url = f"/v1/jobs/{job['id']}/verification"
    body = {"lease_id": job["lease_id"], "paths": [*paths, [1.0]]}
    assert client.post(url, json=body, headers=setup["agent"]).status_code == 422
    bad = {"lease_id": job["lease_id"], "paths": [[float("nan")]] * len(paths)}
    assert client.post(url, content=json.dumps(bad), headers=setup["agent"]).status_code == 422


def test_verify_needs_a_budget_on_a_device(client: TestClient, setup: dict) -> None:
    r = _search(client, setup, 8.0, device="gflops")
    assert r.status_code == 422
    body = {"supernet_id": setup["sid"], "device": "dev", "objective": "min-cost"}
    body |= {"max_drop": 0.1, "verify": True}
    r = client.post("/v1/search", json=body, headers=setup["h"])
    assert r.status_code == 422


def test_the_rounds_are_bounded(client: TestClient, setup: dict) -> None:
    client.app.state.settings.verify_rounds = 1  # type: ignore[attr-defined]
    r = _verified_query(client, setup, 6.0, slow=1.3)
    assert r.status_code == 422, r.text
    assert "1 rounds" in r.json()["detail"] and r.json()["closest"]["expected_ms"] > 6.0


def test_sample_images_report_the_exit_agreement(
    client: TestClient, tokens: dict[str, str], tmp_path: Path
) -> None:
    import io

    import numpy as np

    from mess.bundle import samples_bytes
    from mess.stats import load_stats
    from service.verifications.latency import predicted_exits
    from tests.core.test_bundle_samples import with_samples
    from tests.service.factories import stats_bytes

    images = np.random.default_rng(1).random((3, 3, 16, 16), dtype=np.float32)
    bundle = with_samples(tmp_path / "s.mess", samples_bytes(images, np.array([0, 3, 5])))
    files = {"bundle": ("s.mess", bundle.read_bytes(), "application/zip")}
    sid = client.post("/v1/supernets", files=files, headers=auth(tokens["engineer"])).json()["id"]
    h = auth(tokens["agent"])
    assert client.post("/v1/devices", json={"name": "dev"}, headers=h).status_code == 201
    costs = costs_table("ms", scale=2.0)
    r = client.post(
        "/v1/profiles", json={"supernet_id": sid, "device": "dev", "costs": costs}, headers=h
    )
    s = {"sid": sid, "h": auth(tokens["engineer"]), "agent": h, "costs": costs}
    job = _queued_verification(client, s, 8.0)
    assert job is not None and job["samples"] is True
    got = client.get(f"/v1/jobs/{job['id']}/samples", headers=h)
    assert got.status_code == 200
    with np.load(io.BytesIO(got.content)) as data:
        np.testing.assert_array_equal(data["images"], images)
    config = client.get(f"/v1/configurations/{job['configuration_id']}", headers=h).json()
    (tmp_path / "stats.npz").write_bytes(stats_bytes())
    stats = load_stats(tmp_path / "stats.npz")
    ids = [e["id"] for e in exits()]
    expected = predicted_exits(
        stats.confidence, ids, [0.5, 0.9], config["configuration"], [0, 3, 5]
    )
    paths = len(config["configuration"]["exits"]) + 1
    taken = [*expected[:2], (expected[2] + 1) % paths] if paths > 1 else expected
    report = {"indices": [0, 3, 5], "exits": taken, "ms": [1.0, 2.0, 3.0]}
    body = {"lease_id": job["lease_id"], "paths": _paths(client, s, job, 1.0), "images": report}
    url = f"/v1/jobs/{job['id']}/verification"
    bad = {**body, "images": {**report, "indices": [0, 1, 2]}}
    assert client.post(url, json=bad, headers=h).status_code == 422
    r = client.post(url, json=body, headers=h)
    assert r.status_code == 200, r.text
    verified = r.json()["verification"]
    assert verified["exit_agreement"] == pytest.approx(2 / 3 if paths > 1 else 1.0)
    assert verified["images"]["predicted_exits"] == expected
    assert verified["images"]["mean_ms"] == pytest.approx(2.0)
    answer = _search(client, s, 8.0, wait_seconds=20).json()
    assert answer["verified"]["exit_agreement"] == verified["exit_agreement"]
