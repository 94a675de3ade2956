"""The verification variant of a tailored model: every exit path on demand."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mess.bundle import head_part, policy_part, segment_part, upsample_part
from mess.onnx import PartsIndex, assemble_model
from mess.onnx.force import FORCE_INPUT, force_paths, num_paths

POSITIONS = ["layer1", "layer2", "layer3"]
IDS = [f"{p}/crm0-b0-rdi0-fcn" for p in POSITIONS]


def _part(name: str, scale: float, *, score: bool = False) -> onnx.ModelProto:
    """A 1x1 convolution by ``scale`` (a policy part: the mean, as a 1-element score)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    w = onnx.numpy_helper.from_array((scale * np.eye(3, dtype=np.float32)).reshape(3, 3, 1, 1), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"])]
    if score:
        nodes.append(helper.make_node("ReduceMean", ["c"], ["y"], keepdims=0))
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    else:
        nodes.append(helper.make_node("Identity", ["c"], ["y"]))
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph(nodes, name.replace("/", "_"), [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _parts() -> dict[str, onnx.ModelProto]:
    parts = {segment_part(p): _part(p, 1.1) for p in [*POSITIONS, "final"]}
    for i, (pos, eid) in enumerate(zip(POSITIONS, IDS, strict=True)):
        parts[head_part(eid)] = _part(eid, 2.0 + i)
        parts[upsample_part(pos)] = _part(pos, 1.0)
        parts[policy_part(pos)] = _part(pos, 1.0, score=True)
    parts[head_part("final")] = _part("final", 7.0)
    return parts


INDEX = PartsIndex(
    positions=POSITIONS,
    exit_positions=dict(zip(IDS, POSITIONS, strict=True)),
    pixel_thresholds=[0.5],
    num_classes=3,
    input_size=(8, 8),
)


def _run(model: onnx.ModelProto, image: np.ndarray, path: int | None = None) -> tuple[Any, Any]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds: dict[str, Any] = {"image": image}
    if path is not None:
        feeds[FORCE_INPUT] = np.array(path, dtype=np.int64)
    logits, exit_taken = session.run(["logits", "exit"], feeds)
    return logits, int(exit_taken)


@pytest.mark.parametrize("terminal", ["final", IDS[2]])
def test_each_forced_path_leaves_there_with_the_static_models_logits(terminal: str) -> None:
    parts = _parts()
    config = {
        "exits": [{"id": e, "pixel_threshold": 0.5, "image_threshold": 0.3} for e in IDS[:2]],
        "terminal": terminal,
    }
    model = assemble_model(parts, INDEX, config)
    forced = force_paths(model)
    assert num_paths(model) == num_paths(forced) == 3
    image = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    for k, eid in enumerate([*IDS[:2], terminal]):
        static = assemble_model(parts, INDEX, {"exits": [], "terminal": eid})
        logits, exit_taken = _run(forced, image, k)
        assert exit_taken == k
        np.testing.assert_allclose(logits, _run(static, image)[0], rtol=1e-5)


def test_path_minus_one_keeps_the_models_own_decisions() -> None:
    config = {
        "exits": [{"id": IDS[0], "pixel_threshold": 0.5, "image_threshold": 0.3}],
        "terminal": "final",
    }
    model = assemble_model(_parts(), INDEX, config)
    forced = force_paths(model)
    for value in (0.0, 0.01, 0.5):  # scores: 2 * mean(image) against 0.3
        image = np.full((1, 3, 8, 8), value, dtype=np.float32)
        own = _run(model, image)
        same = _run(forced, image, -1)
        assert same[1] == own[1]
        np.testing.assert_array_equal(same[0], own[0])
    assert _run(forced, np.zeros((1, 3, 8, 8), np.float32), -1)[1] == 1
    assert _run(forced, np.full((1, 3, 8, 8), 0.5, np.float32), -1)[1] == 0


def test_forced_conditions_still_read_every_policy_on_the_way() -> None:
    config = {
        "exits": [{"id": e, "pixel_threshold": 0.5, "image_threshold": 0.3} for e in IDS[:2]],
        "terminal": "final",
    }
    forced = force_paths(assemble_model(_parts(), INDEX, config))

    def walk(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
        out = []
        for node in graph.node:
            out.append(node)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    out += walk(attr.g)
        return out

    nodes = walk(forced.graph)
    ands = [n for n in nodes if n.op_type == "And"]
    decisions = {n.output[0] for n in nodes if n.op_type == "GreaterOrEqual"}
    # each exit's own decision feeds its forced condition: the policy runs on every path
    assert {n.input[0] for n in ands} == decisions and len(decisions) == 2
    ifs = [n for n in nodes if n.op_type == "If"]
    assert all(n.input[0].endswith("_leave") for n in ifs)


def test_a_static_model_has_one_path_and_the_input_unused() -> None:
    model = assemble_model(_parts(), INDEX, {"exits": [], "terminal": "final"})
    forced = force_paths(model)
    assert num_paths(forced) == 1
    image = np.ones((1, 3, 8, 8), np.float32)
    np.testing.assert_array_equal(_run(forced, image, 0)[0], _run(model, image)[0])
    with pytest.raises(ValueError, match="already"):
        force_paths(forced)
