import hashlib
import json
import time

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from profilers.agent import Agent, AgentConfig, AgentError, make_client
from profilers.measure import TIERS, make_session, random_inputs, time_session


def _tiny_part(scale: float) -> bytes:
    w = onnx.numpy_helper.from_array(np.full((4, 4), scale, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "part",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


class FakeServer:
    """Just enough of the jobs API to drive the agent; records every request."""

    def __init__(self, jobs=1, fail_first=0, token="good"):
        self.parts = {"segment/a": _tiny_part(1.0), "head/a/x": _tiny_part(2.0)}
        self.queue = [
            {
                "id": i + 1,
                "supernet_id": "s" * 64,
                "device": "dev",
                "lease_id": "L",
                "lease_seconds": 60,
                "tier": "quick",
            }
            for i in range(jobs)
        ]
        self.fail_first = fail_first
        self.token = token
        self.requests = []
        self.results = {}
        self.released = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"detail": "invalid token"})
        if self.fail_first > 0:
            self.fail_first -= 1
            return httpx.Response(503, json={"detail": "database unavailable"})
        path = request.url.path
        if path == "/v1/devices":
            body = json.loads(request.content)
            assert {"name", "cpu", "cores", "runtime_version", "threads"} <= set(body)
            return httpx.Response(200, json={"name": body["name"]})
        if path == "/v1/jobs/lease":
            if not self.queue:
                return httpx.Response(204)
            return httpx.Response(200, json={"job": self.queue.pop(0)})
        if path.startswith("/v1/supernets/") and "/parts/" in path:
            name = path.split("/parts/", 1)[1]
            return httpx.Response(200, content=self.parts[name])
        if path.startswith("/v1/supernets/"):
            parts = [
                {"name": n, "sha256": hashlib.sha256(b).hexdigest(), "kind": "segment"}
                for n, b in self.parts.items()
            ]
            return httpx.Response(200, json={"parts": parts})
        if path.endswith("/result"):
            job = int(path.split("/")[3])
            self.results[job] = json.loads(request.content)
            assert self.results[job]["lease_id"] == "L"
            return httpx.Response(200, json={"profile_id": 1, "version": 1})
        if path.endswith("/release"):
            assert json.loads(request.content) == {"lease_id": "L"}
            self.released.append(int(path.split("/")[3]))
            return httpx.Response(200, json={})
        if path.endswith("/heartbeat"):
            return httpx.Response(200, json={})
        return httpx.Response(404, json={"detail": "not found"})


def _agent(server, tmp_path, token="good", **kw):
    config = AgentConfig(
        server="http://mess.test",
        token=token,
        name="dev",
        cache_dir=tmp_path / "cache",
        backoff=0.001,
        **kw,
    )
    return Agent(config, make_client(config, transport=httpx.MockTransport(server)))


def test_once_measures_every_part_and_uploads_raw_timings(tmp_path):
    server = FakeServer(jobs=2)
    done = _agent(server, tmp_path).run(once=True)
    assert done == 2
    for result in server.results.values():
        assert set(result["timings"]) == set(server.parts)
        assert all(len(v) >= TIERS["quick"]["min_runs"] for v in result["timings"].values())
        assert result["context"]["intra_op_threads"] == 1
        assert "cache" not in result["context"]  # warm, the default


def test_a_cold_cache_agent_flushes_and_records_it(tmp_path, monkeypatch):
    from profilers import measure

    flushes = []
    monkeypatch.setattr(measure.CacheFlusher, "__call__", lambda self, feeds: flushes.append(1))
    server = FakeServer(jobs=1)
    assert _agent(server, tmp_path, cold_cache=True).run(once=True) == 1
    (result,) = server.results.values()
    assert result["context"]["cache"] == "cold"
    timed = [names[0] for names in result["context"]["signatures"].values()]
    assert len(flushes) >= sum(len(result["timings"][name]) for name in timed)


def test_parts_are_cached_by_sha256(tmp_path):
    server = FakeServer(jobs=2)
    _agent(server, tmp_path).run(once=True)
    downloads = [p for m, p in server.requests if "/parts/" in p]
    assert len(downloads) == len(server.parts)  # the second job read the cache


def test_server_errors_are_retried_with_backoff(tmp_path):
    server = FakeServer(jobs=1, fail_first=3)
    assert _agent(server, tmp_path).run(once=True) == 1


def test_a_bad_token_is_one_clear_error(tmp_path):
    with pytest.raises(AgentError, match="refused the token"):
        _agent(FakeServer(), tmp_path, token="bad").run(once=True)


def test_an_unreachable_server_is_one_clear_error(tmp_path):
    def down(request):
        raise httpx.ConnectError("connection refused")

    with pytest.raises(AgentError, match="cannot reach the server"):
        _agent(down, tmp_path, retries=2).run(once=True)


def test_the_job_loop_waits_out_an_outage_longer_than_its_retries(tmp_path):
    """Loop mode: 5xx and refused connections through every retry are waited out."""
    server = FakeServer(jobs=1, fail_first=12)  # 503s: four rounds of three tries
    calls = {"n": 0}

    def flaky(request):
        calls["n"] += 1
        if calls["n"] % 5 == 0:  # and a connection refused now and then
            raise httpx.ConnectError("connection refused")
        return server(request)

    agent = _agent(flaky, tmp_path, retries=2, poll_seconds=0.001)
    assert agent.run(progress=lambda _: agent.stopping.set()) == 1
    assert set(server.results) == {1}


def test_once_still_gives_up_on_an_outage(tmp_path):
    with pytest.raises(AgentError, match="503 database unavailable through every retry"):
        _agent(FakeServer(jobs=1, fail_first=12), tmp_path, retries=2).run(once=True)


def test_a_refused_token_ends_the_job_loop(tmp_path):
    with pytest.raises(AgentError, match="refused the token"):
        _agent(FakeServer(), tmp_path, token="bad", poll_seconds=0.001).run()


def test_a_stop_request_releases_the_current_job(tmp_path):
    server = FakeServer(jobs=1)
    agent = _agent(server, tmp_path)
    agent.register()
    job = agent.lease()
    agent.stopping.set()  # what SIGTERM does
    with pytest.raises(InterruptedError):
        agent.process(job)
    assert server.released == [1] and not server.results


def test_protocol_meets_the_minimum_runs_and_time(tmp_path):
    session = make_session(_tiny_part(1.0))
    timing = time_session(session, random_inputs(session), tier="quick-fixed")
    assert len(timing.samples_ms) >= 64
    assert sum(timing.samples_ms) / 1e3 <= 5  # bounded
    assert timing.warmup_runs >= 5
    assert timing.p90 >= timing.median > 0


def test_adaptive_protocol_stops_when_the_median_is_known_or_at_the_cap(tmp_path):
    session = make_session(_tiny_part(1.0))
    start = time.perf_counter()
    timing = time_session(session, random_inputs(session), tier="quick")
    seconds = time.perf_counter() - start
    spec = TIERS["quick"]
    assert len(timing.samples_ms) >= spec["min_runs"]
    assert timing.halfwidth is not None
    assert timing.halfwidth <= spec["target"] or seconds >= spec["max_seconds"]
    assert seconds <= spec["max_warmup_seconds"] + spec["max_seconds"] + 1  # bounded
