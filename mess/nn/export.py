"""ONNX export of supernet parts, each checked against PyTorch in onnxruntime.

Parts (fixed input size ``H x W``, batch 1), named as in the bundle manifest:

- ``segment/<position>``: features of the previous position (the first one: the image in
  [0, 1], normalisation inside) -> features at ``<position>``;
- ``segment/final``: last position -> input of the original head;
- ``head/<exit id>``: features -> logits at the head's resolution;
- ``head/final``: the original head with its upsampling -> logits ``[1, C, H, W]``
  (LRASPP: a second input ``low``, the features of its low-level position);
- ``upsample/<position>``: head-resolution logits -> ``[1, C, H, W]`` (bilinear);
- ``policy/<position>``: head-resolution logits -> image scores ``[1, T]`` at the
  calibration's pixel thresholds (:mod:`mess.policy`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from mess.bundle import (
    head_part,
    load_samples,
    policy_part,
    samples_bytes,
    segment_part,
    upsample_part,
    write_bundle,
)
from mess.fileio import sha256_file
from mess.nn.costs import gflops_table
from mess.nn.normalize import IMAGENET_MEAN, IMAGENET_STD, NormalizeLayer
from mess.nn.policy import image_scores
from mess.nn.supernet import Supernet
from mess.space import FINAL
from mess.stats import load_stats

log = logging.getLogger(__name__)
OPSET = 17
PARITY_RTOL = 1e-4


class ExportError(RuntimeError):
    """A part that does not export or does not match PyTorch in onnxruntime."""


@dataclass
class Part:
    name: str
    kind: str  # segment | head | final_head | upsample | policy
    model: bytes
    inputs: list[str]
    outputs: list[str]
    input_shapes: list[list[int]] = field(default_factory=list)


class _First(nn.Module):
    def __init__(self, segment: nn.Module) -> None:
        super().__init__()
        self.normalize = NormalizeLayer()
        self.segment = segment

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.segment(self.normalize(image))


class _FinalHead(nn.Module):
    def __init__(self, supernet: Supernet, size: tuple[int, int]) -> None:
        super().__init__()
        self.head = supernet.final_head
        self.size = size

    def forward(self, x: torch.Tensor, low: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.head(x, low)
        return F.interpolate(logits, size=self.size, mode="bilinear", align_corners=False)


class _Upsample(nn.Module):
    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return F.interpolate(logits, size=self.size, mode="bilinear", align_corners=False)


class _Policy(nn.Module):
    def __init__(self, thresholds: Sequence[float]) -> None:
        super().__init__()
        self.thresholds = [float(t) for t in thresholds]

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return image_scores(logits, self.thresholds)


def _identity_model(name: str, shape: list[int]) -> bytes:
    """An ONNX graph passing its input through (an empty ``final`` segment)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], name, [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return model.SerializeToString()


def _to_onnx(
    module: nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str]
) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            do_constant_folding=True,
        )
    return buf.getvalue()


def check_parity(part: Part, args: Sequence[torch.Tensor], expected: torch.Tensor) -> float:
    """Run a part in onnxruntime; raise unless it matches PyTorch (1e-4 relative)."""
    import onnxruntime as ort  # lazy: only the parity check needs it

    model = onnx.load_from_string(part.model)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(part.model, providers=["CPUExecutionProvider"])
    feeds = {n: a.detach().cpu().numpy() for n, a in zip(part.inputs, args, strict=True)}
    got = session.run(None, feeds)[0]
    ref = expected.detach().cpu().numpy()
    if got.shape != ref.shape:
        raise ExportError(f"{part.name}: onnxruntime shape {got.shape} != PyTorch {ref.shape}")
    scale = max(float(np.abs(ref).max()), 1e-12)
    error = float(np.abs(got - ref).max()) / scale
    if not np.isfinite(error) or error > PARITY_RTOL:
        raise ExportError(f"{part.name}: onnxruntime differs from PyTorch by {error:.2e} (rel.)")
    return error


def export_parts(
    supernet: Supernet,
    input_size: tuple[int, int],
    pixel_thresholds: Sequence[float],
    *,
    check: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[Part]:
    """Every part of ``supernet`` in memory (:func:`iter_parts`; small supernets only)."""
    return list(iter_parts(supernet, input_size, pixel_thresholds, check=check, progress=progress))


def iter_parts(
    supernet: Supernet,
    input_size: tuple[int, int],
    pixel_thresholds: Sequence[float],
    *,
    check: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Iterator[Part]:
    """Export the parts of ``supernet`` for ``input_size`` one at a time, each checked in
    onnxruntime: a caller that writes each away holds one part's graph at a time (the
    paper's space has 626 parts, 2.4 GB of ONNX).

    Args:
        supernet: the supernet (eval mode is set here).
        input_size: ``(H, W)`` of the images the tailored models will take.
        pixel_thresholds: thresholds baked into the policy parts (the stats' ones).
        check: run ``onnx.checker`` and the onnxruntime parity check on every part.
        progress: called with each part name once it is done.

    Yields:
        The parts in dependency order.
    """
    supernet = supernet.cpu().eval()
    h, w = input_size
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, h, w, generator=gen)
    out: dict[str, torch.Tensor] = {}  # the output of the part just exported

    def export(
        name: str,
        kind: str,
        module: nn.Module,
        args: tuple[torch.Tensor, ...],
        inputs: list[str],
        outputs: list[str],
    ) -> Part:
        with torch.no_grad():
            expected = module(*args)
        part = Part(
            name,
            kind,
            _to_onnx(module, args, inputs, outputs),
            inputs,
            outputs,
            [list(a.shape) for a in args],
        )
        if check:
            check_parity(part, args, expected)
        if progress is not None:
            progress(name)
        out["y"] = expected
        return part

    features: dict[int, torch.Tensor] = {}
    x = image
    for pos, segment in zip(supernet.positions, supernet.segments, strict=True):
        module = _First(segment) if pos.index == 0 else segment
        first = pos.index == 0
        yield export(
            segment_part(pos.name), "segment", module, (x,), ["image" if first else "x"], ["y"]
        )
        x = features[pos.index] = out["y"]
    if len(list(supernet.final_segment.children())) == 0:
        with torch.no_grad():
            last = supernet.final_segment(x)
        yield Part(
            segment_part(FINAL),
            "segment",
            _identity_model("segment_final", list(x.shape)),
            ["x"],
            ["y"],
            [list(x.shape)],
        )
    else:
        yield export(segment_part(FINAL), "segment", supernet.final_segment, (x,), ["x"], ["y"])
        last = out["y"]
    low = supernet.final_head.low_position
    final_args, final_inputs = (
        ((last,), ["x"]) if low is None else ((last, features[low]), ["x", "low"])
    )
    yield export(
        head_part(FINAL),
        "final_head",
        _FinalHead(supernet, input_size),
        final_args,
        final_inputs,
        ["logits"],
    )
    done_positions: set[int] = set()
    for eid in supernet.early_exit_ids:
        pos = supernet.position_of(eid)
        yield export(
            head_part(eid),
            "head",
            supernet.exit_head(eid),
            (features[pos.index],),
            ["x"],
            ["logits"],
        )
        logits = out["y"]
        if pos.index in done_positions:
            continue
        done_positions.add(pos.index)
        yield export(
            upsample_part(pos.name),
            "upsample",
            _Upsample(input_size),
            (logits,),
            ["logits"],
            ["logits_up"],
        )
        yield export(
            policy_part(pos.name),
            "policy",
            _Policy(pixel_thresholds),
            (logits,),
            ["logits"],
            ["scores"],
        )


def part_filename(name: str) -> str:
    """Archive path of a part: ``head/layer1.0/crm1-b0-rdi0-fcn`` -> ``parts/head__...onnx``."""
    return "parts/" + name.replace("/", "__") + ".onnx"


def export_bundle(
    supernet: Supernet,
    stats_path: str | Path,
    input_size: tuple[int, int],
    output: str | Path,
    *,
    name: str | None = None,
    check: bool = True,
    progress: Callable[[str], None] | None = None,
    samples: tuple[np.ndarray, np.ndarray] | None = None,
    weights: bool = False,
) -> dict[str, Any]:
    """Write a ``mess-bundle`` v1 (zip): manifest, ONNX parts, stats, GFLOPs costs and,
    when asked, the supernet weights.

    Each part goes to a scratch folder beside ``output`` as soon as it is exported and the
    archive is written from there in chunks, so memory holds the supernet and one part,
    never the whole bundle.

    Args:
        supernet: the trained supernet.
        stats_path: its ``mess-stats`` file (from ``mess calibrate``); its pixel thresholds
            are baked into the policy parts, and its supernet digest must match.
        input_size: ``(H, W)`` of the tailored models.
        output: the ``.mess`` file to write.
        name: a human name (default: the output's stem).
        check: check every part in onnxruntime against PyTorch.
        progress: called with each part name.
        samples: ``(images, indices)``: calibration images (float32 ``[N, 3, H, W]`` in
            [0, 1] at ``input_size``) and their sample indices in the stats, stored as
            ``samples.npz`` for verification (docs/DESIGN.md, "Bundle").
        weights: also store ``supernet.pt``, so that the bundle alone can be exported
            again (``load_supernet`` reads it); nothing in the service, the agent or
            ``mess assemble`` reads it.

    Returns:
        The manifest.
    """
    stats = load_stats(stats_path)
    digest = supernet.digest()
    if stats.meta.get("supernet") != digest:
        raise ExportError(
            f"{stats_path} was computed for supernet {str(stats.meta.get('supernet'))[:12]}, "
            f"not this one ({digest[:12]}): run mess calibrate again"
        )
    thresholds = [float(t) for t in stats.meta["pixel_thresholds"]]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # beside the output, not in /tmp: it holds the whole bundle, and /tmp may be in memory
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".mess-export-") as tmp:
        scratch = Path(tmp)
        (scratch / "parts").mkdir()
        files: dict[str, bytes | Path] = {}
        part_index: dict[str, dict[str, Any]] = {}
        for part in iter_parts(supernet, input_size, thresholds, check=check, progress=progress):
            path = part_filename(part.name)
            (scratch / path).write_bytes(part.model)
            files[path] = scratch / path
            part_index[part.name] = {
                "path": path,
                "sha256": _sha(part.model),
                "kind": part.kind,
                "inputs": part.inputs,
                "input_shapes": part.input_shapes,
            }
        stats_bytes = Path(stats_path).read_bytes()
        files["stats.npz"] = stats_bytes
        costs = json.dumps(gflops_table(supernet, input_size, num_thresholds=1), indent=1)
        files["costs.json"] = costs_bytes = costs.encode()
        sn_manifest = supernet.manifest()
        low = supernet.final_head.low_position
        manifest = {
            "format": "mess-bundle",
            "version": 1,
            "name": name or output.stem,
            "supernet": digest,
            "source": {
                **sn_manifest["source"],
                "space": sn_manifest["space"],
                "widths": sn_manifest["widths"],
                "low_position": supernet.positions[low].name if low is not None else None,
                "pixel_thresholds": thresholds,
            },
            "num_classes": supernet.num_classes,
            "class_names": list(stats.meta.get("class_names") or []),
            "ignore_index": 255,
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "input_size": [int(input_size[0]), int(input_size[1])],
            "positions": [
                {"name": p.name, "channels": p.channels, "stride": p.stride}
                for p in supernet.positions
            ],
            "exits": sn_manifest["exits"],
            "parts": part_index,
            "stats": {"path": "stats.npz", "sha256": _sha(stats_bytes)},
            "costs": {"path": "costs.json", "sha256": _sha(costs_bytes)},
        }
        if weights:
            supernet.save(scratch / "supernet.pt")
            files["supernet.pt"] = scratch / "supernet.pt"
            weights_sha = sha256_file(scratch / "supernet.pt")
            manifest["weights"] = {"path": "supernet.pt", "sha256": weights_sha}
        if samples is not None:
            samples_npz = samples_bytes(*samples)
            load_samples(samples_npz, input_size, int(stats.intersection.shape[0]))
            files["samples.npz"] = samples_npz
            manifest["samples"] = {"path": "samples.npz", "sha256": _sha(samples_npz)}
        write_bundle(output, manifest, files)
    return manifest


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
