"""A verification-only variant of a tailored model that takes a chosen exit path on demand.

Verification times every exit path of the shipped model whole: path ``k`` runs the backbone
to early exit ``k`` and leaves there (``k = E``: the terminal). Random inputs would take
whichever path the policy picks, so the variant adds one graph input, ``mess_force_path``
(int64 scalar), and rewrites the condition of each exit's ``If``::

    leave_i' = (leave_i and path < 0) or path == i

``path = -1`` keeps the model's own decisions; ``path = k`` leaves at ``k``. Each exit's policy
(head, policy part, ``Gather``, ``GreaterOrEqual``) is still computed on every path that passes
it, since ``leave_i`` feeds the ``And``, and ``path`` is a graph input, so no optimiser can fold
the condition away: a forced path costs what the shipped model costs when its images take it.
The shipped model itself is not changed (docs/DESIGN.md, "Tailored ONNX model").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FORCE_INPUT = "mess_force_path"
_EXIT_IF = re.compile(r"^exit(\d+)$")


def num_paths(model: onnx.ModelProto) -> int:
    """Exit paths of a tailored model: its early exits plus the terminal."""
    props = {p.key: p.value for p in model.metadata_props}
    if "mess.configuration" in props:
        return len(json.loads(props["mess.configuration"]).get("exits") or []) + 1
    return sum(1 for _ in _exit_ifs(model.graph)) + 1


def _exit_ifs(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        if node.op_type == "If" and _EXIT_IF.match(node.name):
            yield node
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from _exit_ifs(attr.g)


def _rewrite(graph: onnx.GraphProto) -> int:
    """Rewrite the exit conditions of ``graph`` and its branches; how many were rewritten."""
    count = 0
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        match = _EXIT_IF.match(node.name) if node.op_type == "If" else None
        if match is not None:
            i = int(match.group(1))
            p = f"force{i}_"
            cond = node.input[0]
            nodes += [
                helper.make_node(
                    "Constant",
                    [],
                    [p + "index"],
                    value=numpy_helper.from_array(np.array(i, dtype=np.int64), p + "index"),
                ),
                helper.make_node(
                    "Constant",
                    [],
                    [p + "zero"],
                    value=numpy_helper.from_array(np.array(0, dtype=np.int64), p + "zero"),
                ),
                helper.make_node("Equal", [FORCE_INPUT, p + "index"], [p + "chosen"]),
                helper.make_node("Less", [FORCE_INPUT, p + "zero"], [p + "free"]),
                helper.make_node("And", [cond, p + "free"], [p + "own"]),
                helper.make_node("Or", [p + "own", p + "chosen"], [p + "leave"]),
            ]
            node.input[0] = p + "leave"
            count += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                count += _rewrite(attr.g)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def force_paths(model: onnx.ModelProto) -> onnx.ModelProto:
    """The variant of ``model`` with the ``mess_force_path`` input (see the module docstring).

    A static model (no early exit) gets the input too, unused: every path index then means
    its single path, and callers need no special case.

    Args:
        model: a tailored model (:func:`mess.onnx.assemble_model` or the service's
            ``model.onnx``); left unchanged.

    Returns:
        A checked copy with the extra input.
    """
    forced = onnx.ModelProto()
    forced.CopyFrom(model)
    if any(i.name == FORCE_INPUT for i in forced.graph.input):
        raise ValueError(f"model already has an input {FORCE_INPUT!r}")
    found = _rewrite(forced.graph)
    expected = num_paths(model) - 1
    if found != expected:
        raise ValueError(f"model has {found} exit decisions, its configuration {expected}")
    forced.graph.input.append(helper.make_tensor_value_info(FORCE_INPUT, TensorProto.INT64, []))
    onnx.checker.check_model(forced, full_check=True)
    return forced
