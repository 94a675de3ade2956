"""Small, valid ``mess-bundle`` files for tests: tiny real ONNX graphs, stats, costs."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from mess.bundle import head_part, policy_part, upsample_part
from mess.costs import CostTable, save_costs
from mess.stats import Stats, save_stats

POSITIONS = [("layer1", 8, 4), ("layer2", 16, 8)]
HEAD = "crm0-b0-rdi0-fcn"
NUM_CLASSES = 3
DIGEST = hashlib.sha256(b"tiny supernet weights").hexdigest()


def exits() -> list[dict[str, Any]]:
    """The early exits of the tiny supernet, in depth order."""
    return [
        {"id": f"{name}/{HEAD}", "position": name, "position_index": i, "head": HEAD}
        for i, (name, _, _) in enumerate(POSITIONS)
    ]


def onnx_model(name: str, op: str = "Identity", channels: int = 3) -> bytes:
    """A tiny valid ONNX graph (Identity, or a 1x1 Conv with real weights)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 4, 4])
    inits = []
    if op == "Conv":
        w = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
        inits.append(onnx.numpy_helper.from_array(w, "w"))
        node = helper.make_node("Conv", ["x", "w"], ["y"])
    else:
        node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], name.replace("/", "_"), [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def stats_bytes(
    *, num_classes: int = NUM_CLASSES, exit_list: list[dict[str, Any]] | None = None
) -> bytes:
    """A ``mess-stats`` v1 file for the tiny supernet (random but consistent counts)."""
    ex = exits() if exit_list is None else exit_list
    rng = np.random.default_rng(0)
    n, e, c, t = 6, len(ex) + 1, num_classes, 2
    target = rng.integers(10, 50, size=(n, c))
    # every labelled pixel gets one prediction: per (sample, exit) predicted sums to target's sum
    predicted = np.stack(
        [rng.multinomial(int(target[i].sum()), np.full(c, 1 / c), size=e) for i in range(n)]
    )
    intersection = np.minimum(predicted, target[:, None, :]) // 2
    # image scores never increase with the pixel threshold
    confidence = -np.sort(-rng.random((n, e, t)), axis=2)
    meta = {
        "format": "mess-stats",
        "version": 1,
        "num_classes": c,
        "class_names": [f"c{i}" for i in range(c)],
        "ignore_index": 255,
        "pixel_thresholds": [0.5, 0.9],
        "exits": ex,
        "num_samples": n,
        "supernet": DIGEST,
    }
    buf = io.BytesIO()
    np.savez(
        buf,
        meta=np.array(json.dumps(meta)),
        intersection=intersection.astype(np.int64),
        predicted=predicted.astype(np.int64),
        target=target.astype(np.int64),
        confidence=confidence.astype(np.float32),
    )
    return buf.getvalue()


def costs_table(unit: str = "gflops", scale: float = 1.0) -> dict[str, Any]:
    """A ``mess-costs`` v1 table covering every part of the tiny supernet."""
    ids = [e["id"] for e in exits()]
    return {
        "format": "mess-costs",
        "version": 1,
        "unit": unit,
        "statistic": "exact" if unit == "gflops" else "median",
        "device": None if unit == "gflops" else {"name": "dev"},
        "segments": {**{p: 1.0 * scale for p, _, _ in POSITIONS}, "final": 2.0 * scale},
        "heads": {**{i: 0.5 * scale for i in ids}, "final": 1.0 * scale},
        "policy": {i: 0.01 * scale for i in ids},
    }


def part_path(name: str) -> str:
    return "parts/" + name.replace("/", "__") + ".onnx"


@dataclass(frozen=True)
class Space:
    """What a bundle's manifest, stats and GFLOPs table say about its supernet."""

    positions: list[tuple[str, int, int]]  # (name, channels, stride), in depth order
    exits: list[dict[str, Any]]
    stats: bytes  # mess-stats file
    costs: dict[str, Any]  # mess-costs GFLOPs table
    num_classes: int
    digest: str
    class_names: list[str] | None = None


def space_of(stats: Stats, gflops: CostTable) -> Space:
    """The space of ``stats`` (e.g. :func:`mess.testing.random_stats`, to make a bundle
    whose search takes a while) with ``gflops`` as its table."""
    with tempfile.TemporaryDirectory() as tmp:
        save_stats(stats, Path(tmp) / "stats.npz")
        save_costs(gflops, Path(tmp) / "costs.json")
        raw, costs = (Path(tmp) / "stats.npz").read_bytes(), (Path(tmp) / "costs.json").read_text()
    order = dict.fromkeys((e["position_index"], e["position"]) for e in stats.exits)
    positions = [(name, 8, 4) for _, name in sorted(order)]
    return Space(
        positions,
        list(stats.exits),
        raw,
        json.loads(costs),
        int(stats.meta["num_classes"]),
        str(stats.meta["supernet"]),
        list(stats.meta["class_names"]),
    )


def bundle_contents(
    name: str = "tiny", space: Space | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Manifest and member bytes of a valid tiny bundle (edit them to make invalid ones);
    ``space``: another space than the tiny one (:func:`space_of`)."""
    space = space or Space(POSITIONS, exits(), stats_bytes(), costs_table(), NUM_CLASSES, DIGEST)
    parts: dict[str, tuple[str, bytes]] = {}
    for pos, _, _ in space.positions:
        parts[f"segment/{pos}"] = ("segment", onnx_model(f"segment/{pos}", "Conv"))
    parts["segment/final"] = ("segment", onnx_model("segment/final"))
    for ex in space.exits:
        parts[head_part(ex["id"])] = ("head", onnx_model(head_part(ex["id"])))
    for pos in dict.fromkeys(ex["position"] for ex in space.exits):
        for kind, part in (("upsample", upsample_part(pos)), ("policy", policy_part(pos))):
            parts[part] = (kind, onnx_model(part))
    parts["head/final"] = ("final_head", onnx_model("head/final", "Conv"))
    files = {part_path(n): b for n, (_, b) in parts.items()}
    files["stats.npz"] = space.stats
    files["costs.json"] = json.dumps(space.costs).encode()
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    manifest = {
        "format": "mess-bundle",
        "version": 1,
        "name": name,
        "supernet": space.digest,
        "source": {"model": "test:tiny", "anything": [1, 2]},
        "num_classes": space.num_classes,
        "class_names": space.class_names or [f"c{i}" for i in range(space.num_classes)],
        "ignore_index": 255,
        "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "input_size": [16, 16],
        "positions": [{"name": n, "channels": c, "stride": s} for n, c, s in space.positions],
        "exits": space.exits,
        "parts": {
            n: {"path": part_path(n), "sha256": sha[part_path(n)], "kind": k}
            for n, (k, _) in parts.items()
        },
        "stats": {"path": "stats.npz", "sha256": sha["stats.npz"]},
        "costs": {"path": "costs.json", "sha256": sha["costs.json"]},
    }
    return manifest, files


def make_bundle(path: Path, name: str = "tiny", space: Space | None = None) -> Path:
    """Write a valid tiny bundle (or one of ``space``) to ``path``."""
    from mess.bundle import write_bundle

    manifest, files = bundle_contents(name, space)
    write_bundle(path, manifest, files)
    return path
