"""The signature of a part's computation: weights and names do not count, the rest does."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mess.onnx.signature import SMALL_TENSOR, part_signature


def _conv_part(
    *,
    seed: int = 0,
    names: str = "",
    channels: int = 8,
    size: int = 16,
    kernel: int = 3,
    stride: int = 1,
    dilation: int = 1,
    activation: str = "Relu",
    elem: int = TensorProto.FLOAT,
    shape: tuple[int, ...] = (1, 4),
) -> onnx.ModelProto:
    """Conv -> activation -> Reshape to a constant shape; ``names`` renames every tensor."""
    rng = np.random.default_rng(seed)
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    weight = rng.standard_normal((channels, 4, kernel, kernel)).astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    x, w, b, c, a, s, y = (names + n for n in ("x", "w", "b", "c", "a", "s", "y"))
    pad = dilation * (kernel - 1) // 2
    nodes = [
        helper.make_node(
            "Conv",
            [x, w, b],
            [c],
            name=names + "conv",
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            dilations=[dilation, dilation],
            pads=[pad] * 4,
        ),
        helper.make_node(activation, [c], [a], name=names + "act"),
        helper.make_node(
            "Constant", [], [s], value=numpy_helper.from_array(np.array(shape, np.int64))
        ),
        helper.make_node("Reshape", [a, s], [y]),
    ]
    graph = helper.make_graph(
        nodes,
        names + "graph",
        [helper.make_tensor_value_info(x, elem, [1, 4, size, size])],
        [helper.make_tensor_value_info(y, elem, None)],
        initializer=[numpy_helper.from_array(weight, w), numpy_helper.from_array(bias, b)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_other_weights_and_other_names_are_the_same_computation():
    base = part_signature(_conv_part())
    assert len(base) == 64 and int(base, 16) >= 0
    assert part_signature(_conv_part(seed=1)) == base
    assert part_signature(_conv_part(seed=2, names="stage3.")) == base
    assert part_signature(_conv_part().SerializeToString()) == base  # bytes or proto


def test_initializer_order_in_the_file_does_not_count():
    model = _conv_part()
    reordered = onnx.ModelProto()
    reordered.CopyFrom(model)
    w, b = list(reordered.graph.initializer)
    del reordered.graph.initializer[:]
    reordered.graph.initializer.extend([b, w])
    assert part_signature(reordered) == part_signature(model)


def test_a_change_of_shape_type_attribute_or_op_is_another_computation():
    base = part_signature(_conv_part())
    variants = {
        "input size": _conv_part(size=32),
        "channels": _conv_part(channels=16),
        "dtype": _conv_part(elem=TensorProto.DOUBLE),
        "kernel size": _conv_part(kernel=1),
        "stride": _conv_part(stride=2),
        "dilation": _conv_part(dilation=2),
        "op type": _conv_part(activation="Sigmoid"),
        "reshape target": _conv_part(shape=(1, 2, 2)),
        "reshape values": _conv_part(shape=(4, 1)),
    }
    signatures = {name: part_signature(model) for name, model in variants.items()}
    assert base not in signatures.values()
    assert len(set(signatures.values())) == len(signatures)  # all distinct, too


def test_the_wiring_counts():
    def sub(first: str, second: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            [helper.make_node("Sub", [first, second], ["y"])],
            "g",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("a", "b")],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    assert part_signature(sub("a", "b")) != part_signature(sub("b", "a"))


def _scaled(values: np.ndarray, *, as_constant: bool, resize: bool = False) -> onnx.ModelProto:
    """``y = x * k`` (or a Resize by scales ``k``), ``k`` a Constant node or an initializer."""
    node = (
        helper.make_node("Resize", ["x", "", "k"], ["y"], mode="nearest")
        if resize
        else helper.make_node("Mul", ["x", "k"], ["y"])
    )
    nodes, initializers = [node], []
    tensor = numpy_helper.from_array(values, "k")
    if as_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["k"], value=tensor))
    else:
        initializers.append(tensor)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_small_constants_count_by_value_large_ones_by_shape():
    small = np.full(SMALL_TENSOR, 0.5, np.float32)
    large = np.full((1, 1, 8, 8), 0.5, np.float32)  # 64 elements: a weight
    assert large.size > SMALL_TENSOR
    for array, same in ((small, False), (large, True)):
        one = part_signature(_scaled(array, as_constant=True))
        other = part_signature(_scaled(array * 2, as_constant=True))
        assert (one == other) is same


def test_float_initializers_are_weights_unless_they_set_a_shape():
    bias = np.full(8, 0.5, np.float32)  # a short bias (8 classes): a weight all the same
    mul = part_signature(_scaled(bias, as_constant=False))
    assert part_signature(_scaled(bias * 2, as_constant=False)) == mul
    scales = np.array([1, 1, 2, 2], np.float32)
    resize = part_signature(_scaled(scales, as_constant=False, resize=True))
    assert part_signature(_scaled(scales * 2, as_constant=False, resize=True)) != resize


def test_subgraphs_count():
    def branch(op: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node(op, ["x"], ["z"])],
            "branch",
            [],
            [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
        )

    def model(then_op: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            [
                helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
                helper.make_node("Cast", ["s"], ["c"], to=TensorProto.BOOL),
                helper.make_node(
                    "If", ["c"], ["y"], then_branch=branch(then_op), else_branch=branch("Relu")
                ),
            ],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    assert part_signature(model("Relu")) == part_signature(model("Relu"))
    assert part_signature(model("Relu")) != part_signature(model("Sigmoid"))
