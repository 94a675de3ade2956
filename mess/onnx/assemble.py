"""Assemble one self-contained tailored ONNX model from exported parts (onnx only, no torch).

The model (docs/DESIGN.md, "Tailored ONNX model") takes ``image`` float32 ``[1, 3, H, W]``
RGB in [0, 1] and returns ``logits`` float32 ``[1, C, H, W]`` and ``exit`` (int64 scalar,
0..k). Early exits are nested ``If`` nodes: the layers after a taken exit sit in the ``else``
branch and do not run.

Each part's weights are initializers of the graph its nodes land in (the main graph or one
branch), not of the main graph for all: onnxruntime's CPU provider gives a branch's convolutions
its blocked NCHWc kernels only when their weights are the branch's own, and without them the
layers behind an exit ran about 25 % slower than the same layers timed as parts
(``bench/RESULTS.md``, "Tailored models").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mess.bundle import head_part, policy_part, segment_part, upsample_part
from mess.space import FINAL


class AssemblyError(ValueError):
    """A configuration that cannot be assembled from the given parts."""


@dataclass(frozen=True)
class PartsIndex:
    """What the assembler needs to know about a supernet's exported parts."""

    positions: Sequence[str]  # depth order
    exit_positions: Mapping[str, str]  # exit id -> position name
    pixel_thresholds: Sequence[float]
    num_classes: int
    input_size: tuple[int, int]
    low_position: str | None = None  # LRASPP's low-level input of head/final

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> PartsIndex:
        """The assembler's view of a ``mess-bundle`` manifest."""
        source = manifest.get("source") or {}
        try:
            return cls(
                positions=[str(p["name"]) for p in manifest["positions"]],
                exit_positions={str(e["id"]): str(e["position"]) for e in manifest["exits"]},
                pixel_thresholds=[float(t) for t in source.get("pixel_thresholds", [])],
                num_classes=int(manifest["num_classes"]),
                input_size=(int(manifest["input_size"][0]), int(manifest["input_size"][1])),
                low_position=source.get("low_position"),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise AssemblyError(f"manifest lacks what assembly needs: {exc}") from None


@dataclass
class _Body:
    """The nodes of one graph (main or a branch) and the weights only they read."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)


class _Builder:
    def __init__(self, parts: Mapping[str, onnx.ModelProto], index: PartsIndex) -> None:
        self.parts = parts
        self.index = index
        self.counter = 0
        self.opsets: dict[str, int] = {}
        h, w = index.input_size
        self.logits_type = [1, index.num_classes, h, w]

    def part(self, name: str) -> onnx.ModelProto:
        try:
            return self.parts[name]
        except KeyError:
            raise AssemblyError(f"part {name!r} is missing from the bundle") from None

    def inline(self, body: _Body, name: str, inputs: Sequence[str]) -> list[str]:
        """Append the part's nodes (renamed) and weights to ``body``; return its output names."""
        self.counter += 1
        prefix = f"s{self.counter}_"
        part = self.part(name)
        for o in part.opset_import:
            self.opsets[o.domain] = max(self.opsets.get(o.domain, 0), o.version)
        model = onnx.compose.add_prefix(part, prefix)
        graph = model.graph
        init_names = {i.name for i in graph.initializer}
        graph_inputs = [i.name for i in graph.input if i.name not in init_names]
        if len(graph_inputs) != len(inputs):
            raise AssemblyError(f"part {name!r} takes {len(graph_inputs)} inputs")
        rename = dict(zip(graph_inputs, inputs, strict=True))
        body.initializers.extend(graph.initializer)
        for node in graph.node:
            for i, value in enumerate(node.input):
                if value in rename:
                    node.input[i] = rename[value]
            body.nodes.append(node)
        return [rename.get(o.name, o.name) for o in graph.output]

    def const(self, body: _Body, value: np.ndarray, hint: str) -> str:
        self.counter += 1
        name = f"c{self.counter}_{hint}"
        body.nodes.append(
            helper.make_node(
                "Constant", [], [name], value=numpy_helper.from_array(value, name), name=name
            )
        )
        return name

    def identity(self, body: _Body, value: str, out: str) -> None:
        self.counter += 1
        body.nodes.append(helper.make_node("Identity", [value], [out], name=f"id{self.counter}"))


@dataclass
class _Cursor:
    """The backbone value computed so far and its depth (position index)."""

    value: str
    depth: int


def _threshold_index(thresholds: Sequence[float], tp: float) -> int:
    for i, t in enumerate(thresholds):
        if abs(float(t) - tp) <= 1e-9:
            return i
    raise AssemblyError(f"pixel threshold {tp} is not one of the calibrated {list(thresholds)}")


def assemble_model(
    parts: Mapping[str, onnx.ModelProto],
    index: PartsIndex,
    configuration: Mapping[str, Any],
    *,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """Build the tailored model of ``configuration`` from ``parts``.

    Args:
        parts: part name -> ONNX model (see :mod:`mess.nn.export` for names).
        index: positions, exits and shapes of the supernet.
        configuration: ``{"exits": [{"id", "pixel_threshold", "image_threshold"}],
            "terminal": "final" | exit id}``.
        metadata: extra ``metadata_props``.

    Returns:
        A checked ``onnx.ModelProto``.
    """
    exits = list(configuration.get("exits", []))
    terminal = str(configuration.get("terminal", FINAL))
    order = {p: i for i, p in enumerate(index.positions)}

    def position(eid: str) -> int:
        try:
            return order[index.exit_positions[eid]]
        except KeyError:
            raise AssemblyError(f"unknown exit {eid!r}") from None

    depths = [position(str(e["id"])) for e in exits]
    if any(b <= a for a, b in zip(depths, depths[1:], strict=False)):
        raise AssemblyError("early exits must be at strictly increasing positions")
    if terminal != FINAL and depths and position(terminal) <= depths[-1]:
        raise AssemblyError("a truncated terminal exit must be deeper than the last early exit")

    b = _Builder(parts, index)
    main = _Body()
    state = _Cursor("image", -1)
    low_value: dict[str, str] = {}
    low_depth = order[index.low_position] if index.low_position else None

    def advance(body: _Body, to: int) -> str:
        while state.depth < to:
            state.depth += 1
            name = index.positions[state.depth]
            (out,) = b.inline(body, segment_part(name), [state.value])
            state.value = out
            if state.depth == low_depth:
                low_value["v"] = out
        return state.value

    def terminal_nodes(body: _Body, k: int) -> tuple[str, str]:
        if terminal == FINAL:
            last = advance(body, len(index.positions) - 1)
            (x,) = b.inline(body, segment_part(FINAL), [last])
            inputs = [x, low_value["v"]] if index.low_position else [x]
            (logits,) = b.inline(body, head_part(FINAL), inputs)
        else:
            feat = advance(body, position(terminal))
            (small,) = b.inline(body, head_part(terminal), [feat])
            pos = index.exit_positions[terminal]
            (logits,) = b.inline(body, upsample_part(pos), [small])
        exit_value = b.const(body, np.array(k, dtype=np.int64), "exit")
        return logits, exit_value

    def branch_graph(body: _Body, outputs: tuple[str, str], name: str) -> onnx.GraphProto:
        logits_out, exit_out = f"{name}_logits", f"{name}_exit"
        b.identity(body, outputs[0], logits_out)
        b.identity(body, outputs[1], exit_out)
        return helper.make_graph(
            body.nodes,
            name,
            [],
            [
                helper.make_tensor_value_info(logits_out, TensorProto.FLOAT, b.logits_type),
                helper.make_tensor_value_info(exit_out, TensorProto.INT64, []),
            ],
            initializer=body.initializers,
        )

    def stage(body: _Body, k: int) -> tuple[str, str]:
        """Nodes from early exit ``k`` on; returns (logits, exit) value names."""
        if k == len(exits):
            return terminal_nodes(body, k)
        rule = exits[k]
        eid = str(rule["id"])
        feat = advance(body, position(eid))
        (small,) = b.inline(body, head_part(eid), [feat])
        pos = index.exit_positions[eid]
        (scores,) = b.inline(body, policy_part(pos), [small])
        tp = _threshold_index(index.pixel_thresholds, float(rule["pixel_threshold"]))
        flat = b.const(body, np.array([-1], dtype=np.int64), "flat")
        b.counter += 1
        score_vec = f"score{b.counter}"
        body.nodes.append(helper.make_node("Reshape", [scores, flat], [score_vec]))
        idx = b.const(body, np.array(tp, dtype=np.int64), "tp")
        score = f"score{b.counter}_tp"
        body.nodes.append(helper.make_node("Gather", [score_vec, idx], [score], axis=0))
        ti = b.const(body, np.array(float(rule["image_threshold"]), dtype=np.float32), "ti")
        cond = f"leave{k}"
        body.nodes.append(helper.make_node("GreaterOrEqual", [score, ti], [cond]))

        then_body = _Body()
        (up,) = b.inline(then_body, upsample_part(pos), [small])
        then_exit = b.const(then_body, np.array(k, dtype=np.int64), "exit")
        then_graph = branch_graph(then_body, (up, then_exit), f"exit{k}_then")

        else_body = _Body()
        rest = stage(else_body, k + 1)
        else_graph = branch_graph(else_body, rest, f"exit{k}_else")

        logits, exit_value = f"if{k}_logits", f"if{k}_exit"
        body.nodes.append(
            helper.make_node(
                "If",
                [cond],
                [logits, exit_value],
                name=f"exit{k}",
                then_branch=then_graph,
                else_branch=else_graph,
            )
        )
        return logits, exit_value

    logits, exit_value = stage(main, 0)
    b.identity(main, logits, "logits")
    b.identity(main, exit_value, "exit")
    h, w = index.input_size
    graph = helper.make_graph(
        main.nodes,
        "mess_tailored",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, b.logits_type),
            helper.make_tensor_value_info("exit", TensorProto.INT64, []),
        ],
        initializer=main.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(b.opsets.items())],
        producer_name="mess",
    )
    props = {"mess.configuration": json.dumps(dict(configuration), sort_keys=True)}
    props.update(metadata or {})
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    return model
