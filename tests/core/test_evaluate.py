import numpy as np
import onnx
from onnx import TensorProto, helper

from mess.evaluate import class_ious, evaluate_model
from mess.stats import miou_from_sums


def _fixed_model(c: int, h: int, w: int, labels: np.ndarray) -> bytes:
    """A model that ignores its input and predicts ``labels`` (as one-hot logits), exit 1."""
    onehot = np.eye(c, dtype=np.float32)[labels].transpose(2, 0, 1)[None]
    nodes = [
        helper.make_node("Constant", [], ["logits"], value=onnx.numpy_helper.from_array(onehot)),
        helper.make_node(
            "Constant", [], ["exit"], value=onnx.numpy_helper.from_array(np.array(1, np.int64))
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, c, h, w]),
            helper.make_tensor_value_info("exit", TensorProto.INT64, []),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_miou_is_accumulated_over_the_set_and_ignores_void():
    pred = np.array([[0, 0], [1, 2]])
    model = _fixed_model(3, 2, 2, pred)
    masks = [np.array([[0, 1], [1, 255]]), np.array([[0, 0], [2, 2]])]
    samples = [(np.zeros((3, 2, 2), np.float32), m) for m in masks]
    result = evaluate_model(model, samples, num_classes=3)
    # class 0: I=1+2, P=2+2, T=1+2 -> 3/4 ; class 1: I=1, P=1+1, T=2 -> 1/3 ;
    # class 2: I=0+1, P=0+1 (void excluded), T=0+2 -> 1/2
    assert result.per_class_iou == [0.75, 1 / 3, 0.5]
    assert np.isclose(result.miou, (0.75 + 1 / 3 + 0.5) / 3)
    assert result.exit_counts == [0, 2] and result.exit_fractions == [0.0, 1.0]
    assert len(result.latency_ms) == 2
    # per image, kept for resampling: their column sums are the set's counts
    assert result.intersection.tolist() == [[1, 1, 0], [2, 0, 1]]
    assert result.union.tolist() == [[2, 2, 0], [2, 1, 2]]


def test_classes_absent_everywhere_do_not_count():
    inter, union = np.array([2, 0, 0]), np.array([4, 0, 3])
    miou, per_class = miou_from_sums(inter, union), class_ious(inter, union)
    assert per_class == [0.5, None, 0.0]
    assert miou == 0.25
