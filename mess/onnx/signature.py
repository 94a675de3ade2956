"""The signature of an ONNX part's computation: equal for parts that differ only in weights.

Every position of one backbone stage has the same channels and stride, so its heads are the
same computations with other weights, and a dense convolution runs no faster or slower for
other weight values: timing one part of each signature times them all (docs/DESIGN.md,
"Agent measurement protocol").

What the sha256 covers:

- the opset imports and the IR version;
- the graph inputs and outputs by position: element type and dimensions (names do not count);
- every node in the order of the file: domain, op type, attributes (name, type, value), and
  its inputs as references to what produced them (a graph input, an initializer or an output of
  an earlier node, by position), so that the wiring counts and the exporter's names do not;
- initializers: element type and dimensions; their values too where they can change the
  computation (integer tensors: shapes, axes, indices; a resize's float scales), see
  :func:`_values_matter`;
- constants held in attributes (``Constant``'s ``value``): element type and dimensions, and
  their values when integer or at most :data:`SMALL_TENSOR` elements (thresholds, scales);
- subgraphs (``If``, ``Loop``, ``Scan`` attributes) the same way, recursively.

Not covered: names of nodes and tensors, doc strings, metadata, ``value_info`` (shape
inference annotations the runtime recomputes) and weight values. Two equal computations whose
nodes are listed in another order get different signatures: that costs a second measurement,
never a wrong one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

__all__ = ["SMALL_TENSOR", "part_signature"]

# A constant in an attribute with at most this many elements is hashed by value whatever its
# type: scalars and short vectors (thresholds, scales, clip bounds) steer the computation,
# weights are larger. Initializers are weights unless integer (a short float bias is a weight).
SMALL_TENSOR = 16
# Float initializers that set an output shape (Resize/Upsample roi and scales), by input slot.
_SHAPE_SLOTS = {("", "Resize"): {1, 2}, ("", "Upsample"): {1}}
_INTEGER_TYPES = {
    TensorProto.INT8,
    TensorProto.INT16,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.UINT8,
    TensorProto.UINT16,
    TensorProto.UINT32,
    TensorProto.UINT64,
    TensorProto.BOOL,
}


def part_signature(model: onnx.ModelProto | bytes) -> str:
    """sha256 (hex) of the computation of ``model``, without its weight values.

    Args:
        model: an ONNX model or its serialised bytes.

    Returns:
        64 hex digits; equal for models that compute the same function of their inputs up to
        weight values (see the module docstring for what counts).
    """
    if isinstance(model, bytes):
        model = onnx.load_from_string(model)
    content = {
        "ir": model.ir_version,
        "opsets": sorted((o.domain, o.version) for o in model.opset_import),
        "graph": _graph(model.graph, {}),
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _graph(graph: onnx.GraphProto, outer: Mapping[str, str]) -> dict[str, Any]:
    """Canonical content of a graph; ``outer`` names the enclosing graph's tensors."""
    initializers = {t.name: t for t in graph.initializer}
    shape_fed = _shape_fed(graph)
    names = dict(outer)
    inputs: list[str] = []
    for value in graph.input:
        if value.name in initializers:  # IR < 4 lists initializers among the inputs
            continue
        names[value.name] = f"in{len(inputs)}"
        inputs.append(_value_type(value))
    weights: list[dict[str, Any]] = []
    for node in graph.node:
        for name in node.input:
            if name in initializers and name not in names:
                names[name] = f"w{len(weights)}"
                tensor = initializers[name]
                weights.append(_tensor(tensor, values=_values_matter(tensor, name in shape_fed)))
    nodes: list[dict[str, Any]] = []
    for index, node in enumerate(graph.node):
        nodes.append(
            {
                "op": [node.domain, node.op_type],
                "in": [names.get(name, f"?{name}") if name else "" for name in node.input],
                "attr": [_attribute(a, names) for a in sorted(node.attribute, key=_by_name)],
            }
        )
        for slot, name in enumerate(node.output):
            if name:
                names[name] = f"n{index}.{slot}"
    outputs = [[names.get(v.name, f"?{v.name}"), _value_type(v)] for v in graph.output]
    return {"inputs": inputs, "weights": weights, "nodes": nodes, "outputs": outputs}


def _by_name(attribute: AttributeProto) -> str:
    return attribute.name


def _shape_fed(graph: onnx.GraphProto) -> set[str]:
    """Names that feed an input slot setting an output shape (:data:`_SHAPE_SLOTS`)."""
    fed: set[str] = set()
    for node in graph.node:
        for slot in _SHAPE_SLOTS.get((node.domain, node.op_type), ()):
            if slot < len(node.input) and node.input[slot]:
                fed.add(node.input[slot])
    return fed


def _values_matter(tensor: TensorProto, shape_fed: bool) -> bool:
    """Whether a tensor's values are part of the computation, not just its type and shape.

    Integer and boolean tensors are shapes, axes, indices and masks; float tensors feeding a
    resize's scales set a shape. Other float tensors are weights: their values do not change
    what runs, nor how long.
    """
    return tensor.data_type in _INTEGER_TYPES or shape_fed


def _tensor(tensor: TensorProto, *, values: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"type": tensor.data_type, "dims": list(tensor.dims)}
    if values:
        array = np.ascontiguousarray(numpy_helper.to_array(tensor))
        content["sha256"] = hashlib.sha256(array.tobytes()).hexdigest()
    return content


def _value_type(value: onnx.ValueInfoProto) -> str:
    """A value's type without its name (element type, dims or symbolic dims)."""
    return value.type.SerializeToString(deterministic=True).hex()


def _attribute(attribute: AttributeProto, names: Mapping[str, str]) -> list[Any]:
    """Name, type and value; tensors by the constant rule, graphs recursively."""
    kind = attribute.type
    value: Any
    if attribute.ref_attr_name:
        value = ["ref", attribute.ref_attr_name]
    elif kind == AttributeProto.FLOAT:
        value = attribute.f
    elif kind == AttributeProto.INT:
        value = attribute.i
    elif kind == AttributeProto.STRING:
        value = attribute.s.hex()
    elif kind == AttributeProto.TENSOR:
        value = _constant(attribute.t)
    elif kind == AttributeProto.GRAPH:
        value = _graph(attribute.g, _outer(names))
    elif kind == AttributeProto.FLOATS:
        value = list(attribute.floats)
    elif kind == AttributeProto.INTS:
        value = list(attribute.ints)
    elif kind == AttributeProto.STRINGS:
        value = [s.hex() for s in attribute.strings]
    elif kind == AttributeProto.TENSORS:
        value = [_constant(t) for t in attribute.tensors]
    elif kind == AttributeProto.GRAPHS:
        value = [_graph(g, _outer(names)) for g in attribute.graphs]
    else:  # sparse tensors, type protos: whole, values included
        value = attribute.SerializeToString(deterministic=True).hex()
    return [attribute.name, kind, value]


def _outer(names: Mapping[str, str]) -> dict[str, str]:
    """The enclosing graph's names as a subgraph sees them (apart from its own)."""
    return {name: "^" + label for name, label in names.items()}


def _constant(tensor: TensorProto) -> dict[str, Any]:
    """A tensor held in an attribute (``Constant``'s ``value``): small ones by value too."""
    size = int(np.prod(tensor.dims, dtype=np.int64))
    return _tensor(tensor, values=tensor.data_type in _INTEGER_TYPES or size <= SMALL_TENSOR)
