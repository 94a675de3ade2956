"""The agent's measurement protocol, cold option: the flush untimed, the cache sized."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from profilers import measure
from profilers.measure import (
    PROTOCOL,
    CacheFlusher,
    largest_cache_bytes,
    measure_parts,
    measurement_context,
    time_session,
)


def _part() -> bytes:
    w = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "part",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_the_largest_cache_is_read_from_sysfs(tmp_path):
    for index, size in {"0": "32K", "1": "32K", "2": "1024K", "3": "32768K"}.items():
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "size").write_text(size + "\n")
    assert largest_cache_bytes(tmp_path) == 32 * 2**20
    (tmp_path / "index4").mkdir()
    (tmp_path / "index4" / "size").write_text("2M")
    (tmp_path / "index5").mkdir()
    (tmp_path / "index5" / "size").write_text("garbage")  # ignored, not fatal
    assert largest_cache_bytes(tmp_path) == 32 * 2**20
    (tmp_path / "index6").mkdir()
    (tmp_path / "index6" / "size").write_text("65536")  # plain bytes
    assert largest_cache_bytes(tmp_path) == 32 * 2**20
    assert largest_cache_bytes(tmp_path / "missing") is None


def test_the_flush_buffer_is_twice_the_cache_within_bounds(monkeypatch):
    for cache, expected in ((3 * 2**20, 6 * 2**20), (None, 64 * 2**20), (2**30, 512 * 2**20)):
        monkeypatch.setattr(measure, "largest_cache_bytes", lambda cache=cache: cache)
        assert CacheFlusher().buffer.nbytes == expected
    assert CacheFlusher(4096).buffer.nbytes == 4096


class _FakeSession:
    """Advances a fake clock by 1 ms per run; the flush advances it by 100 ms."""

    def __init__(self) -> None:
        self.now_ns = 0
        self.events: list[str] = []

    def run(self, _outputs, _feeds):
        self.events.append("run")
        self.now_ns += 1_000_000


def test_every_run_is_flushed_first_and_the_flush_is_not_timed():
    session = _FakeSession()
    flushed: list[dict] = []

    def flush(feeds):
        flushed.append(dict(feeds))
        session.events.append("flush")
        session.now_ns += 100_000_000

    feeds = {"x": np.zeros((1, 4), np.float32)}
    timing = time_session(session, feeds, tier="smoke", clock=lambda: session.now_ns, flush=flush)
    assert timing.samples_ms and all(ms == 1.0 for ms in timing.samples_ms)
    assert session.events == ["flush", "run"] * (len(session.events) // 2)
    assert all(f.keys() == feeds.keys() for f in flushed)


def test_cold_parts_are_flushed_before_every_run_and_the_context_says_so():
    calls = []
    timings = measure_parts(
        {"a": _part(), "b": _part()}, tier="smoke", cold=True, flush=calls.append
    )
    timed = [t for t in timings.values() if t.shared_from is None]
    runs = sum(len(t.samples_ms) + t.warmup_runs for t in timed)
    assert len(calls) == runs > 0
    assert measurement_context(1, None, "smoke", cold=True)["cache"] == "cold"
    calls.clear()
    measure_parts({"a": _part()}, tier="smoke", flush=calls.append)
    assert calls == []  # warm by default
    warm = measurement_context(1, None, "smoke")
    assert "cache" not in warm and warm["protocol"] == PROTOCOL == "mess-agent/2"
