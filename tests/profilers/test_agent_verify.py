"""The agent's verify jobs: the shipped model timed path by path, sample images run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mess.bundle import samples_bytes
from mess.onnx import assemble_model
from profilers.agent import Agent, AgentConfig, make_client
from profilers.measure import TIERS
from tests.onnx.test_force import IDS, INDEX, _parts

CONFIG = {
    "exits": [{"id": e, "pixel_threshold": 0.5, "image_threshold": 0.3} for e in IDS[:2]],
    "terminal": "final",
}


class FakeServer:
    def __init__(self, etag: str | None = None) -> None:
        self.model = assemble_model(_parts(), INDEX, CONFIG).SerializeToString()
        self.etag = etag or hashlib.sha256(self.model).hexdigest()
        images = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
        self.samples = samples_bytes(images, np.array([0, 4, 7]))
        self.queue = [
            {
                "id": 9,
                "kind": "verify",
                "supernet_id": "s" * 64,
                "configuration_id": "c" * 64,
                "device": "dev",
                "lease_id": "L",
                "lease_seconds": 60,
                "tier": "smoke",
                "configurations": [],
                "samples": True,
            }
        ]
        self.leases: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/devices":
            return httpx.Response(200, json={"name": "dev"})
        if path == "/v1/jobs/lease":
            self.leases.append(json.loads(request.content))
            if not self.queue:
                return httpx.Response(204)
            return httpx.Response(200, json={"job": self.queue.pop(0)})
        if path == f"/v1/configurations/{'c' * 64}/model.onnx":
            return httpx.Response(200, content=self.model, headers={"ETag": f'"{self.etag}"'})
        if path == "/v1/jobs/9/samples":
            return httpx.Response(200, content=self.samples)
        if path == "/v1/jobs/9/verification":
            self.uploads.append(json.loads(request.content))
            return httpx.Response(200, json={"verification": {"id": 1}})
        if path == "/v1/jobs/9/fail":
            self.failures.append(json.loads(request.content))
            return httpx.Response(200, json={})
        if path.endswith("/heartbeat"):
            return httpx.Response(200, json={})
        return httpx.Response(404, json={"detail": path})


def _agent(server: FakeServer, tmp_path: Path) -> Agent:
    config = AgentConfig(
        server="http://mess.test",
        token="t",
        name="dev",
        tier="smoke",
        cache_dir=tmp_path,
        backoff=0.001,
    )
    return Agent(config, make_client(config, transport=httpx.MockTransport(server)))


def test_a_verify_job_times_every_exit_path_and_runs_the_sample_images(tmp_path: Path) -> None:
    server = FakeServer()
    assert _agent(server, tmp_path).run(once=True) == 1
    (upload,) = server.uploads
    assert upload["lease_id"] == "L" and len(upload["paths"]) == 3
    assert all(len(p) >= TIERS["smoke"]["min_runs"] for p in upload["paths"])
    assert upload["context"]["intra_op_threads"] == 1
    images = upload["images"]
    assert images["indices"] == [0, 4, 7] and len(images["exits"]) == len(images["ms"]) == 3
    assert all(0 <= e <= 2 for e in images["exits"]) and all(t > 0 for t in images["ms"])


def test_the_lease_names_both_kinds(tmp_path: Path) -> None:
    server = FakeServer()
    server.queue.clear()
    agent = _agent(server, tmp_path)
    assert agent.lease() is None
    assert server.leases == [{"device": "dev", "kinds": ["profile", "verify"]}]


def test_a_model_that_does_not_match_its_etag_fails_the_job(tmp_path: Path) -> None:
    server = FakeServer(etag="0" * 64)
    result = _agent(server, tmp_path).process_verification(server.queue.pop(0))
    assert "ETag" in result["failed"] and not server.uploads
    assert "ETag" in server.failures[0]["error"]


class _CountingSession:
    """A session whose runs take no time; it records which path each run took."""

    def __init__(self) -> None:
        self.paths: list[int] = []

    def run(self, _outputs: Any, feeds: dict[str, Any]) -> None:
        self.paths.append(int(feeds["path"]))


def test_mixed_paths_are_drawn_by_the_exit_fractions_and_each_gets_its_minimum() -> None:
    from profilers.verify import mix_weights, time_mixed

    assert mix_weights([0.9, 0.1, 0.0]) == pytest.approx(
        [0.9 / 1.0833, 0.1 / 1.0833, 0.0833 / 1.0833], rel=1e-3
    )
    session = _CountingSession()
    feeds = [{"path": np.array(k)} for k in range(3)]
    ticks = iter(range(0, 10**12, 1000))  # 1 us a run on a fake clock: the cap never binds
    timings = time_mixed(
        session, feeds, [0.9, 0.1, 0.0], tier="quick-fixed", clock=lambda: next(ticks)
    )
    stream = session.paths[15:]  # after 5 warm-up runs of each path
    runs = [len(t.samples_ms) for t in timings]
    assert runs == [stream.count(k) for k in range(3)]
    assert min(runs) >= TIERS["quick-fixed"]["min_runs"]
    shares = [r / sum(runs) for r in runs]
    assert shares == pytest.approx(mix_weights([0.9, 0.1, 0.0]), abs=0.03)
    # consecutive runs change path as a deployment's images do, not one path's block at a time
    changes = sum(a != b for a, b in zip(stream, stream[1:], strict=False))
    assert changes > len(stream) / 10


def test_an_adaptive_mixed_stream_stops_once_every_paths_median_is_known() -> None:
    from profilers.verify import time_mixed

    session = _CountingSession()
    feeds = [{"path": np.array(k)} for k in range(2)]
    ticks = iter(range(0, 10**15, 10**5))  # every run 0.1 ms exactly: a median known at once
    timings = time_mixed(session, feeds, [0.5, 0.5], tier="quick", clock=lambda: next(ticks))
    runs = [len(t.samples_ms) for t in timings]
    least = TIERS["quick"]["min_runs"]
    assert least <= min(runs) <= least + len(feeds)  # the first check after the minimum
    assert sum(runs) < 4 * TIERS["quick"]["min_runs"]
    assert all(t.median == pytest.approx(0.1) for t in timings)
