"""Devices: agents register by name, re-registering updates; names are validated."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import auth

DEVICE = {
    "name": "pixel-7.lab_1",
    "cpu": "Tensor G2",
    "cores": 8,
    "memory": 8_000_000_000,
    "os": "Android 14",
    "python": "3.11.9",
    "runtime": "onnxruntime",
    "runtime_version": "1.20.1",
    "providers": ["CPUExecutionProvider"],
    "threads": 4,
}


def test_register_then_update_by_name(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["agent"])
    first = client.post("/v1/devices", json=DEVICE, headers=h)
    assert first.status_code == 201
    assert {k: first.json()[k] for k in DEVICE} == DEVICE
    second = client.post("/v1/devices", json={**DEVICE, "threads": 2}, headers=h)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"] and second.json()["threads"] == 2
    assert second.json()["updated_at"] > first.json()["updated_at"]
    got = client.get(f"/v1/devices/{DEVICE['name']}", headers=auth(tokens["engineer"])).json()
    assert got["threads"] == 2
    listed = client.get("/v1/devices", headers=h).json()["items"]
    assert [d["name"] for d in listed] == [DEVICE["name"]]


def test_unknown_device_is_404(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get("/v1/devices/nope", headers=auth(tokens["agent"]))
    assert r.status_code == 404 and r.json() == {"detail": "device 'nope' not found"}


def test_invalid_names_and_fields_are_422(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["agent"])
    for bad in ({**DEVICE, "name": "../etc"}, {**DEVICE, "cores": 0}, {**DEVICE, "gpu": "x"}):
        r = client.post("/v1/devices", json=bad, headers=h)
        assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    assert client.get("/v1/devices/a%20b", headers=h).status_code == 422


def test_malformed_json_is_422_not_500(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post(
        "/v1/devices",
        content=b"{not json",
        headers={**auth(tokens["agent"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
