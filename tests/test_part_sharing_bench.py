"""bench/part_sharing.py on four hand-made parts (two computations), smoke tier: the plumbing."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from bench.part_sharing import groups_by_signature, profiling, sample_groups, soundness


def _part(scale: float, width: int) -> bytes:
    w = onnx.numpy_helper.from_array(np.full((width, width), scale, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "part",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


PARTS = {
    "head/a/x": _part(1.0, 4),
    "head/b/x": _part(2.0, 4),
    "head/c/x": _part(3.0, 4),
    "segment/a": _part(1.0, 8),
}


def test_groups_samples_and_soundness_rows():
    groups = groups_by_signature(PARTS)
    assert sorted(map(len, groups.values())) == [1, 3]
    (sample,) = sample_groups(groups, count=4, members=2, seed=0)
    assert len(sample) == 2 and all(name.startswith("head/") for name in sample)
    (row,) = soundness(PARTS, [sample], rounds=2, tier="smoke")
    assert row["parts"] == sample
    assert all(len(v) == 2 for v in row["round_medians_ms"].values())
    assert row["spread_pct"] >= 0 and row["noise_pct"] >= 0


def test_profiling_rows_compare_each_setting_with_the_first():
    settings = [("every part", False, "smoke"), ("shared", True, "smoke")]
    first, shared = profiling(PARTS, seed=0, settings=settings)
    assert (first["parts"], first["timed"], shared["timed"]) == (4, 4, 2)
    assert first["deviation_pct_max"] == 0.0
    assert set(shared["medians_ms"]) == set(PARTS)
    assert shared["runs"] < first["runs"]
