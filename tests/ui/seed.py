"""A service holding what the dashboard shows, seeded through the API only: two supernets
(one whose name holds markup), two devices profiled by agents through the job queue (with
whole-model timings), and a finished search on each device."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.service.factories import make_bundle

EVIL = '<script>alert("mess")</script>'
DEVICES = {"pi-5": 3.0, "jetson": 1.0}  # device -> how slow its parts are


Client = Any  # a TestClient or an httpx.Client: the same calls


@dataclass
class Seeded:
    supernet_id: str
    evil_supernet_id: str
    engineer: str
    agent: str
    answers: dict[str, dict[str, Any]]  # device -> the answer of its search (with its front)


def _ok(response: Any, *codes: int) -> Any:
    assert response.status_code in (codes or (200, 201)), response.text
    return response.json()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(client: Client, admin: str, role: str, name: str) -> str:
    body = {"name": name, "role": role}
    return str(_ok(client.post("/v1/tokens", json=body, headers=_h(admin)))["token"])


def _push(client: Client, token: str, path: Path) -> str:
    files = {"bundle": (path.name, path.read_bytes(), "application/zip")}
    return str(_ok(client.post("/v1/supernets", files=files, headers=_h(token)))["id"])


def _profile(client: Client, agent: str, device: str, slow: float) -> None:
    job = _ok(client.post("/v1/jobs/lease", json={"device": device}, headers=_h(agent)), 200)
    job = job["job"]
    parts = _ok(client.get(f"/v1/supernets/{job['supernet_id']}", headers=_h(agent)))["parts"]
    timings = {
        p["name"]: [slow * (1 + i % 5), slow * (1.1 + i % 5), slow * (1.2 + i % 5)]
        for i, p in enumerate(parts)
    }
    wholes = [
        {"configuration": c, "samples_ms": [slow * 9.0, slow * 9.5, slow * 10.0]}
        for c in job["configurations"]
    ]
    body = {
        "lease_id": job["lease_id"],
        "timings": timings,
        "wholes": wholes,
        "context": {
            "runtime": "onnxruntime",
            "runtime_version": "1.20.1",
            "providers": ["CPUExecutionProvider"],
            "intra_op_threads": 4,
            "rule": {"target": 0.02, "min_runs": 16},
            # the agent's report: per part, and the device's own drift meanwhile
            "precision": {
                p["name"]: {"halfwidth_pct": 1.0 + 0.6 * (i % 3), "runs": 16}
                for i, p in enumerate(parts)
            },
            "speed": {"at_s": [0.0, 30.1], "medians_ms": [0.5, 0.52], "spread_pct": 4.0},
        },
    }
    _ok(client.post(f"/v1/jobs/{job['id']}/result", json=body, headers=_h(agent)), 200)


def search(client: Client, token: str, supernet_id: str, device: str, **extra: Any) -> Any:
    """``POST /v1/search`` until the front is computed; the answer."""
    body = {"supernet_id": supernet_id, "device": device, "objective": "pareto", **extra}
    deadline = time.monotonic() + 60
    while True:
        r = client.post("/v1/search", json=body, headers=_h(token))
        if r.status_code != 202:
            return _ok(r, 200)
        assert time.monotonic() < deadline, "the search did not finish"
        time.sleep(0.2)


def seed(client: Client, admin: str, folder: Path) -> Seeded:
    """Fill an empty service (``admin``: an admin token) through its API."""
    engineer = _token(client, admin, "engineer", "ui-engineer")
    agent = _token(client, admin, "agent", "ui-agent")
    sid = _push(client, engineer, make_bundle(folder / "tiny.mess"))
    for device in DEVICES:
        body = {"name": device, "runtime": "onnxruntime", "threads": 4, "cpu": "test cpu"}
        _ok(client.post("/v1/devices", json=body, headers=_h(agent)))
    for device, slow in DEVICES.items():
        _profile(client, agent, device, slow)
    # pushed after the profiles: its jobs stay queued
    evil = _push(client, engineer, make_bundle(folder / "evil.mess", name=EVIL))
    answers = {device: search(client, engineer, sid, device) for device in DEVICES}
    return Seeded(sid, evil, engineer, agent, answers)
