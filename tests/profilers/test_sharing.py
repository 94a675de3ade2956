"""Parts of one computation are timed once; the profile's context says which shared what."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper

from profilers import measure
from profilers.measure import measure_parts, measurement_context, measurement_report


def _part(scale: float, width: int = 4) -> bytes:
    w = onnx.numpy_helper.from_array(np.full((width, width), scale, np.float32), f"w{scale}")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", w.name], ["y"])],
        "part",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


PARTS = {
    "head/a/x": _part(1.0),
    "head/b/x": _part(2.0),  # the same computation with other weights
    "head/c/x": _part(3.0),
    "segment/a": _part(1.0, width=8),  # another computation
}


def _timed(monkeypatch) -> list[str]:
    """Names of the parts actually timed, in order."""
    timed: list[str] = []
    real = measure.time_session

    def spy(session, feeds, **kwargs):
        timed.append(kwargs["name"])
        return real(session, feeds, **kwargs)

    monkeypatch.setattr(measure, "time_session", spy)
    return timed


def test_one_part_per_signature_is_timed_and_the_others_share_its_timing(monkeypatch):
    timed = _timed(monkeypatch)
    seen = []
    timings = measure_parts(PARTS, tier="smoke", seed=3, progress=lambda name, t: seen.append(name))
    assert sorted(seen) == sorted(timings) == sorted(PARTS)  # progress for every part
    assert len(timed) == 2 and "segment/a" in timed
    (head,) = [name for name in timed if name.startswith("head/")]
    assert timings[head].shared_from is None
    for name in ("head/a/x", "head/b/x", "head/c/x"):
        assert timings[name].samples_ms == timings[head].samples_ms
        assert timings[name].signature == timings[head].signature
        assert timings[name].shared_from == (None if name == head else head)
        assert timings[name].name == name
    assert timings["segment/a"].signature != timings[head].signature
    # the representative is the first of its group in the seeded order
    assert seen.index(head) == min(seen.index(n) for n in PARTS if n.startswith("head/"))


def test_no_share_times_every_part(monkeypatch):
    timed = _timed(monkeypatch)
    timings = measure_parts(PARTS, tier="smoke", share=False)
    assert sorted(timed) == sorted(PARTS)
    assert all(t.signature is None and t.shared_from is None for t in timings.values())
    assert "signatures" not in measurement_report(timings)
    assert measurement_context(1, None, "smoke", share=False)["share"] is False


def test_the_report_lists_each_signature_timed_part_first_and_every_part_precision():
    timings = measure_parts(PARTS, tier="smoke")
    report = json.loads(json.dumps(measurement_report(timings)))  # plain JSON for the upload
    groups = report["signatures"]
    assert sorted(len(names) for names in groups.values()) == [1, 3]
    for names in groups.values():
        assert timings[names[0]].shared_from is None
        assert all(timings[n].shared_from == names[0] for n in names[1:])
    assert set(report["precision"]) == set(PARTS)
    for name, entry in report["precision"].items():
        assert entry["runs"] == len(timings[name].samples_ms) >= 8
        assert entry["halfwidth_pct"] is not None and entry["halfwidth_pct"] >= 0


def test_the_context_records_the_stopping_rule():
    quick = measurement_context(1, None, "quick")
    assert quick["share"] is True
    assert quick["rule"] == {
        "stop": "median known",
        "interval": "order statistics (binomial ranks)",
        "confidence": 0.95,
        "target": 0.02,
        "min_runs": 16,
        "max_seconds": 2.0,
        "cap_runs": 256,
        "max_part_seconds": 30.0,
        "check_every": 8,
        "max_warmup_seconds": 2.0,
    }
    fixed = measurement_context(1, None, "quick-fixed")["rule"]
    assert fixed == {"stop": "fixed", "min_runs": 64, "min_seconds": 1.0, "max_warmup_seconds": 2.0}


def test_the_agent_uploads_a_timing_per_part_and_the_sharing_in_the_context(tmp_path):
    from tests.profilers.test_agent import FakeServer, _agent

    for share in (True, False):
        server = FakeServer(jobs=1)  # two parts: one computation, other weights
        assert _agent(server, tmp_path / str(share), share=share).run(once=True) == 1
        (result,) = server.results.values()
        timings, context = result["timings"], result["context"]
        assert set(timings) == set(server.parts)  # the upload format is unchanged
        assert context["share"] is share and context["protocol"] == "mess-agent/2"
        assert set(context["precision"]) == set(server.parts)
        first, second = timings.values()
        if share:
            (names,) = context["signatures"].values()
            assert sorted(names) == sorted(server.parts)
            assert first == second
        else:
            assert "signatures" not in context
            assert first != second  # timed apart (equal raw times to the ns: never)
