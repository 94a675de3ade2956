"""Partial timings of profiling jobs: chunks under the lease, their validation, resume by
the next lease, discarding them, and the result made of chunks plus the rest."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.jobs.models import Job
from tests.service.conftest import auth
from tests.service.test_jobs import _lease, _push, _register, _timings

CONTEXT = {"runtime": "onnxruntime", "tier": "quick", "protocol": "mess-agent/2"}


@pytest.fixture
def queued(client: TestClient, tokens: dict[str, str], bundle_file: Path) -> str:
    sid = _push(client, tokens, bundle_file)
    _register(client, tokens)
    return sid


def _chunk(
    client: TestClient,
    tokens: dict[str, str],
    job: dict[str, Any],
    timings: dict[str, Any],
    context: dict[str, Any] | None = None,
    **extra: Any,
) -> Any:
    body = {"lease_id": job["lease_id"], "timings": timings, "context": context or CONTEXT}
    return client.post(  # json.dumps writes NaN, which a client may send
        f"/v1/jobs/{job['id']}/timings",
        content=json.dumps(body | extra),
        headers=auth(tokens["agent"]) | {"Content-Type": "application/json"},
    )


def _stored(client: TestClient, tokens: dict[str, str], job_id: int) -> dict[str, Any]:
    r = client.get(f"/v1/jobs/{job_id}/timings", headers=auth(tokens["agent"]))
    assert r.status_code == 200, r.text
    return dict(r.json())


def _expire(client: TestClient, job_id: int) -> None:
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))
        session.commit()


def _result(
    client: TestClient, tokens: dict[str, str], job: dict[str, Any], timings: dict[str, Any]
) -> Any:
    body = {"lease_id": job["lease_id"], "timings": timings, "context": CONTEXT | {"x": 1}}
    return client.post(f"/v1/jobs/{job['id']}/result", json=body, headers=auth(tokens["agent"]))


def test_chunks_are_stored_and_the_result_is_chunks_plus_the_rest(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    job = _lease(client, tokens)
    assert job["resume"] is None
    timings = _timings(client, tokens, queued)
    names = sorted(timings)
    first = {n: timings[n] for n in names[:3]}
    sig = "ab" * 32
    r = _chunk(client, tokens, job, first, signatures={names[0]: sig})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "job_id": job["id"],
        "stored": 3,
        "unchanged": 0,
        "parts": 3,
        "missing": len(names) - 3,
    }
    again = _chunk(client, tokens, job, first)  # a retried chunk changes nothing
    assert again.status_code == 200 and again.json()["unchanged"] == 3
    stored = _stored(client, tokens, job["id"])
    assert stored["context"] == CONTEXT and set(stored["parts"]) == set(first)
    assert stored["parts"][names[0]] == {
        "samples_ms": first[names[0]],
        "signature": sig,
        "shared_from": None,
    }
    rest = {n: timings[n] for n in names[3:]}
    r = _result(client, tokens, job, rest | {names[0]: first[names[0]]})  # overlap: same values
    assert r.status_code == 200, r.text
    profile_id = r.json()["profile_id"]
    h = auth(tokens["agent"])
    raw = client.get(f"/v1/profiles/{profile_id}/raw", headers=h).json()
    assert raw == timings
    context = client.get(f"/v1/profiles/{profile_id}", headers=h).json()["context"]
    assert "resume" not in context  # one lease, nothing discarded
    assert _stored(client, tokens, job["id"])["parts"] == {}  # in the profile now
    retry = _result(client, tokens, job, rest)
    assert retry.status_code == 200 and retry.json()["profile_id"] == profile_id


def test_bad_chunks_are_refused_and_nothing_stored_is_lost(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    job = _lease(client, tokens)
    timings = _timings(client, tokens, queued)
    name, other = sorted(timings)[:2]
    assert _chunk(client, tokens, job, {name: timings[name]}).status_code == 200

    def refused(status: int, words: str, **kwargs: Any) -> None:
        body = kwargs.pop("timings", {other: [1.0]})
        r = _chunk(client, tokens, job, body, **kwargs)
        assert r.status_code == status, r.text
        assert words in r.json()["detail"], r.json()["detail"]

    refused(422, "no part 'segment/nowhere'", timings={other: [1.0], "segment/nowhere": [1.0]})
    refused(422, "finite", timings={other: [1.0, float("nan")]})
    refused(422, "non-negative", timings={other: [-0.5]})
    refused(422, "1 to 100000", timings={other: []})
    refused(422, "timings", timings={other: 3.0})
    refused(422, "timings", timings=[[1.0]])
    refused(422, "already has other timings", timings={other: [1.0], name: [9.9]})
    refused(422, "context differs", context=CONTEXT | {"tier": "full"})
    refused(422, "64 hex", signatures={other: "nope"})
    refused(422, "without timings", shared_from={"head/final": other})
    refused(422, "not a part", shared_from={other: "head/none"})
    refused(409, "not leased under this lease", lease_id="someone-else")
    stored = _stored(client, tokens, job["id"])
    assert stored["parts"] == {
        name: {"samples_ms": timings[name], "signature": None, "shared_from": None}
    }
    _expire(client, job["id"])
    refused(409, "ran out")
    assert set(_stored(client, tokens, job["id"])["parts"]) == {name}


def test_a_new_lease_resumes_where_the_last_chunk_ended(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    first = _lease(client, tokens)
    timings = _timings(client, tokens, queued)
    names = sorted(timings)
    done = {n: timings[n] for n in names[:4]}
    assert _chunk(client, tokens, first, done).status_code == 200
    _expire(client, first["id"])  # the agent died: no heartbeat
    second = _lease(client, tokens)
    assert second["id"] == first["id"] and second["lease_id"] != first["lease_id"]
    assert second["resume"] == {"parts": sorted(done), "context": CONTEXT}
    assert _chunk(client, tokens, first, {names[4]: [1.0]}).status_code == 409  # the dead lease
    assert _chunk(client, tokens, second, {names[4]: timings[names[4]]}).status_code == 200
    bad = _result(client, tokens, second, {n: timings[n] for n in names[6:]})
    assert bad.status_code == 422 and "no timings for part" in bad.json()["detail"]
    other = {"lease_id": second["lease_id"], "context": {"tier": "full"}}
    r = client.post(
        f"/v1/jobs/{second['id']}/result",
        json=other | {"timings": {n: timings[n] for n in names[5:]}},
        headers=auth(tokens["agent"]),
    )
    assert r.status_code == 422 and "context differs" in r.json()["detail"]
    r = _result(client, tokens, second, {n: timings[n] for n in names[5:]})
    assert r.status_code == 200, r.text
    h = auth(tokens["agent"])
    profile = client.get(f"/v1/profiles/{r.json()['profile_id']}", headers=h).json()
    assert profile["context"]["resume"] == {"parts": 4, "leases": 1, "discarded": []}
    raw = client.get(f"/v1/profiles/{profile['id']}/raw", headers=h).json()
    assert raw == timings


def test_timings_of_another_context_are_discarded_with_the_reason(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    h = auth(tokens["agent"])
    first = _lease(client, tokens)
    timings = _timings(client, tokens, queued)
    names = sorted(timings)
    assert _chunk(client, tokens, first, {names[0]: timings[names[0]]}).status_code == 200
    r = client.post(
        f"/v1/jobs/{first['id']}/release", json={"lease_id": first["lease_id"]}, headers=h
    )
    assert r.status_code == 200
    second = _lease(client, tokens)
    assert second["resume"]["parts"] == [names[0]]
    reason = "measured under another context: tier: 'quick' -> 'full'"
    foreign = client.post(
        f"/v1/jobs/{second['id']}/timings/discard",
        json={"lease_id": first["lease_id"], "reason": reason},
        headers=h,
    )
    assert foreign.status_code == 409
    r = client.post(
        f"/v1/jobs/{second['id']}/timings/discard",
        json={"lease_id": second["lease_id"], "reason": reason},
        headers=h,
    )
    assert r.status_code == 200 and r.json() == {"job_id": second["id"], "discarded": 1}
    full = CONTEXT | {"tier": "full"}
    assert _chunk(client, tokens, second, {names[1]: [2.0]}, context=full).status_code == 200
    body = {"lease_id": second["lease_id"], "timings": {n: timings[n] for n in names[2:]}}
    r = client.post(
        f"/v1/jobs/{second['id']}/result",
        json=body | {"timings": body["timings"] | {names[0]: [1.0]}, "context": full},
        headers=h,
    )
    assert r.status_code == 200, r.text
    context = client.get(f"/v1/profiles/{r.json()['profile_id']}", headers=h).json()["context"]
    (note,) = context["resume"]["discarded"]
    assert note["reason"] == reason and note["parts"] == 1
    assert context["resume"]["parts"] == 0


def test_a_device_registering_with_other_attributes_discards_its_partial_timings(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    job = _lease(client, tokens)
    timings = _timings(client, tokens, queued)
    name = sorted(timings)[0]
    assert _chunk(client, tokens, job, {name: timings[name]}).status_code == 200
    _register(client, tokens)  # the same attributes again: kept
    assert set(_stored(client, tokens, job["id"])["parts"]) == {name}
    _register(client, tokens, runtime_version="9.9.9")
    stored = _stored(client, tokens, job["id"])
    assert stored["parts"] == {} and stored["context"] is None
    (note,) = stored["discarded"]
    assert "runtime_version: None -> '9.9.9'" in note["reason"] and note["parts"] == 1


def test_nul_bytes_in_a_chunk_or_a_reason_are_no_server_error(
    client: TestClient, tokens: dict[str, str], queued: str
) -> None:
    job = _lease(client, tokens)
    timings = _timings(client, tokens, queued)
    name = sorted(timings)[0]
    assert _chunk(client, tokens, job, {"head/\x00": [1.0]}).status_code == 422
    r = _chunk(client, tokens, job, {name: timings[name]}, context={"tier": "a\x00b"})
    assert r.status_code == 200, r.text  # JSON escapes it
    assert _stored(client, tokens, job["id"])["context"] == {"tier": "a\x00b"}
    r = client.post(
        f"/v1/jobs/{job['id']}/timings/discard",
        json={"lease_id": job["lease_id"], "reason": "nul \x00 here"},
        headers=auth(tokens["agent"]),
    )
    assert r.status_code == 200, r.text
    assert _stored(client, tokens, job["id"])["discarded"][0]["reason"] == "nul \x00 here"
