"""Chunked uploads of a job's timings and the resumption of a job from them, agent side."""

from __future__ import annotations

import json

import httpx
import pytest

from profilers.chunks import ChunkUploader, chunk_body, context_changes, resumed_timings
from profilers.measure import Timing, measure_parts
from tests.profilers.test_agent import FakeServer, _agent
from tests.profilers.test_sharing import PARTS, _timed


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _uploader(sent: list[dict], parts: int = 3, seconds: float = 10.0, answer=True):
    clock = Clock()

    def send(body: dict) -> bool:
        if isinstance(answer, Exception):
            raise answer
        sent.append(body)
        return bool(answer)

    return ChunkUploader(send, {"tier": "quick"}, parts=parts, seconds=seconds, clock=clock), clock


def test_a_chunk_goes_every_n_parts_or_every_t_seconds():
    sent: list[dict] = []
    chunks, clock = _uploader(sent)
    for i in range(7):
        chunks.add(Timing(f"p{i}", [1.0 + i], signature="ab" * 32))
    assert [sorted(b["timings"]) for b in sent] == [["p0", "p1", "p2"], ["p3", "p4", "p5"]]
    assert sent[0]["context"] == {"tier": "quick"} and sent[0]["signatures"]["p0"] == "ab" * 32
    assert chunks.stored == {f"p{i}" for i in range(6)} and set(chunks.pending) == {"p6"}
    clock.now = 11.0  # the time is up: the next part goes at once
    chunks.add(Timing("p7", [2.0]))
    assert sorted(sent[-1]["timings"]) == ["p6", "p7"] and not chunks.pending
    chunks.add(Timing("p8", [2.0]))
    chunks.flush()  # before the job is given back
    assert list(sent[-1]["timings"]) == ["p8"] and chunks.chunks == 4


def test_an_unsent_chunk_is_kept_and_a_server_without_chunks_turns_them_off():
    sent: list[dict] = []
    chunks, _ = _uploader(sent, parts=1, answer=False)  # server unavailable
    chunks.add(Timing("a", [1.0]))
    chunks.add(Timing("b", [1.0]))
    assert set(chunks.pending) == {"a", "b"} and not chunks.stored
    chunks, _ = _uploader(sent, parts=1, answer=NotImplementedError("404"))
    chunks.add(Timing("a", [1.0]))
    assert chunks.parts == 0 and set(chunks.pending) == {"a"}
    chunks.add(Timing("b", [1.0]))  # no more tries: the result carries them
    assert set(chunks.pending) == {"a", "b"}


def test_resumed_parts_are_not_timed_again_and_lend_their_timing_to_their_signature(
    monkeypatch,
):
    reference = measure_parts(PARTS, tier="smoke", seed=3)
    (head,) = [n for n, t in reference.items() if n.startswith("head/") and not t.shared_from]
    stored = chunk_body([reference[head], reference["segment/a"]], {})
    done = resumed_timings(
        {
            n: {
                "samples_ms": stored["timings"][n],
                "signature": stored["signatures"].get(n),
                "shared_from": None,
            }
            for n in stored["timings"]
        }
    )
    timed = _timed(monkeypatch)
    seen: list[str] = []
    timings = measure_parts(
        PARTS, tier="smoke", seed=3, done=done, progress=lambda n, t: seen.append(n)
    )
    assert timed == []  # every computation was timed before
    assert sorted(seen) == sorted(set(PARTS) - {head, "segment/a"})
    assert set(timings) == set(PARTS)
    for name in PARTS:
        if name.startswith("head/"):
            assert timings[name].samples_ms == reference[head].samples_ms
            assert timings[name].shared_from == (None if name == head else head)


def test_context_changes_name_each_key_that_differs():
    stored = {"tier": "quick", "protocol": "mess-agent/2", "share": True}
    mine = {"tier": "full", "protocol": "mess-agent/2", "cache": "cold", "share": True}
    assert context_changes(stored, mine) == ["cache: None -> 'cold'", "tier: 'quick' -> 'full'"]
    assert context_changes(stored, dict(stored)) == []


class ChunkServer(FakeServer):
    """The fake jobs API with chunks: stores them, resumes a job from them."""

    def __init__(self, resume: dict | None = None, stored: dict | None = None):
        super().__init__(jobs=1)
        self.parts = dict(PARTS)
        self.chunks: list[dict] = []
        self.stored = stored or {}
        self.discarded: list[str] = []
        if resume is not None:
            self.queue[0]["resume"] = resume

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/timings/discard"):
            self.discarded.append(json.loads(request.content)["reason"])
            self.stored = {}
            return httpx.Response(200, json={"job_id": 1, "discarded": 1})
        if path.endswith("/timings") and request.method == "POST":
            body = json.loads(request.content)
            self.chunks.append(body)
            for name, samples in body["timings"].items():
                self.stored[name] = {
                    "samples_ms": samples,
                    "signature": body["signatures"].get(name),
                    "shared_from": body["shared_from"].get(name),
                }
            return httpx.Response(200, json={"stored": len(body["timings"])})
        if path.endswith("/timings"):
            return httpx.Response(200, json={"job_id": 1, "parts": self.stored})
        return super().__call__(request)


def test_the_agent_uploads_chunks_as_it_measures(tmp_path):
    server = ChunkServer()
    assert _agent(server, tmp_path, tier="smoke", chunk_parts=3).run(once=True) == 1
    assert [len(c["timings"]) for c in server.chunks] == [3]
    (result,) = server.results.values()
    assert set(result["timings"]) == set(PARTS)  # all again, the chunks' with their values
    for name, part in server.stored.items():
        assert result["timings"][name] == part["samples_ms"]
    signatures = result["context"]["signatures"]  # the report covers every part
    assert sorted(n for names in signatures.values() for n in names) == sorted(PARTS)


def test_a_stopping_agent_uploads_what_it_measured_before_giving_the_job_back(tmp_path):
    server = ChunkServer()
    agent = _agent(server, tmp_path, tier="smoke", chunk_parts=100)
    agent.register()
    job = agent.lease()
    agent.stopping.set()  # SIGTERM during the first part
    with pytest.raises(InterruptedError):
        agent.process(job)
    assert server.released == [1] and len(server.stored) == 1


def test_the_agent_resumes_a_job_measured_under_its_context(tmp_path, monkeypatch):
    first = ChunkServer()
    agent = _agent(first, tmp_path, tier="smoke", chunk_parts=1)
    assert agent.run(once=True) == 1
    context = first.chunks[0]["context"]
    some = dict(list(first.stored.items())[:2])
    server = ChunkServer(resume={"parts": sorted(some), "context": context}, stored=some)
    timed = _timed(monkeypatch)
    assert _agent(server, tmp_path, tier="smoke", chunk_parts=1).run(once=True) == 1
    assert not set(timed) & set(some) and not server.discarded
    assert set(server.stored) == set(PARTS)
    for name, part in some.items():
        assert server.stored[name] == part  # never timed again


def test_the_agent_starts_over_when_the_stored_context_differs(tmp_path):
    stored = {"head/a/x": {"samples_ms": [1.0], "signature": None, "shared_from": None}}
    resume = {"parts": ["head/a/x"], "context": {"tier": "full"}}
    server = ChunkServer(resume=resume, stored=stored)
    assert _agent(server, tmp_path, tier="smoke", chunk_parts=1).run(once=True) == 1
    (reason,) = server.discarded
    assert "tier: 'full' -> 'smoke'" in reason
    assert set(server.stored) == set(PARTS) and server.stored["head/a/x"]["samples_ms"] != [1.0]
