"""Profiles: device cost tables validated against the supernet, versioned per device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import auth
from tests.service.factories import costs_table, exits


@pytest.fixture
def setup(client: TestClient, tokens: dict[str, str], bundle_file: Path) -> dict[str, Any]:
    files = {"bundle": ("b.mess", bundle_file.read_bytes(), "application/zip")}
    sid = client.post("/v1/supernets", files=files, headers=auth(tokens["engineer"])).json()["id"]
    h = auth(tokens["agent"])
    assert client.post("/v1/devices", json={"name": "dev"}, headers=h).status_code == 201
    return {"supernet_id": sid, "h": h}


def _body(sid: str, **kw: Any) -> dict[str, Any]:
    return {"supernet_id": sid, "device": "dev", "costs": costs_table("ms"), **kw}


def test_versions_identical_upload_and_listing(client: TestClient, setup: dict[str, Any]) -> None:
    sid, h = setup["supernet_id"], setup["h"]
    raw = {"segment/layer1": [1.0, 1.1, 0.9]}
    first = client.post("/v1/profiles", json=_body(sid, context={"threads": 4}, raw=raw), headers=h)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1 and first.json()["has_raw"]
    same = client.post("/v1/profiles", json=_body(sid, context={"threads": 4}, raw=raw), headers=h)
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    other = client.post("/v1/profiles", json=_body(sid, context={"threads": 2}), headers=h)
    assert other.status_code == 201 and other.json()["version"] == 2
    listed = client.get("/v1/profiles", params={"supernet_id": sid, "device": "dev"}, headers=h)
    assert [p["version"] for p in listed.json()["items"]] == [2, 1]
    assert client.get("/v1/profiles", params={"device": "other"}, headers=h).json()["items"] == []
    got = client.get(f"/v1/profiles/{first.json()['id']}", headers=h).json()
    assert got["costs"] == costs_table("ms") and got["context"] == {"threads": 4}
    r = client.get(f"/v1/profiles/{first.json()['id']}/raw", headers=h)
    assert json.loads(r.content) == raw
    assert client.get(f"/v1/profiles/{other.json()['id']}/raw", headers=h).status_code == 404


def test_table_missing_an_exit_is_422(client: TestClient, setup: dict[str, Any]) -> None:
    costs = costs_table("ms")
    del costs["policy"][exits()[0]["id"]]
    r = client.post(
        "/v1/profiles", json=_body(setup["supernet_id"], costs=costs), headers=setup["h"]
    )
    assert r.status_code == 422 and exits()[0]["id"] in r.json()["detail"]


def test_gflops_table_is_not_a_device_profile(client: TestClient, setup: dict[str, Any]) -> None:
    body = _body(setup["supernet_id"], costs=costs_table("gflops"))
    r = client.post("/v1/profiles", json=body, headers=setup["h"])
    assert r.status_code == 422 and "ms" in r.json()["detail"]


def test_raw_timings_for_unknown_parts_or_negative_are_422(
    client: TestClient, setup: dict[str, Any]
) -> None:
    sid, h = setup["supernet_id"], setup["h"]
    r = client.post("/v1/profiles", json=_body(sid, raw={"segment/zzz": [1.0]}), headers=h)
    assert r.status_code == 422 and "segment/zzz" in r.json()["detail"]
    r = client.post("/v1/profiles", json=_body(sid, raw={"segment/layer1": [-1.0]}), headers=h)
    assert r.status_code == 422


def test_unknown_supernet_or_device_is_404(client: TestClient, setup: dict[str, Any]) -> None:
    h = setup["h"]
    assert client.post("/v1/profiles", json=_body("0" * 64), headers=h).status_code == 404
    body = {**_body(setup["supernet_id"]), "device": "ghost"}
    assert client.post("/v1/profiles", json=body, headers=h).status_code == 404
    assert client.get("/v1/profiles/999", headers=h).status_code == 404
    assert client.get("/v1/profiles/abc", headers=h).status_code == 422


def test_concurrent_uploads_all_land(client: TestClient, setup: dict[str, Any]) -> None:
    """Writers racing on one device: every upload is stored, versions 1..N without gaps
    (on SQLite write transactions begin IMMEDIATE: they queue rather than fail with 503)."""
    from concurrent.futures import ThreadPoolExecutor

    sid, h = setup["supernet_id"], setup["h"]

    def upload(i: int) -> int:
        body = _body(sid, context={"run": i})
        return client.post("/v1/profiles", json=body, headers=h).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(upload, range(24)))
    assert codes == [201] * 24
    listed = client.get(
        "/v1/profiles", params={"supernet_id": sid, "device": "dev", "limit": 100}, headers=h
    ).json()["items"]
    assert sorted(p["version"] for p in listed) == list(range(1, 25))
