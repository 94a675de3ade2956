"""Measure a tailored ONNX model on labelled images: mIoU, exits taken, latency (torch-free).

Batch 1, as a device runs it. mIoU is accumulated over the whole set (intersections and
unions summed over images, then averaged over classes with a non-empty union), exactly as
docs/DESIGN.md, "Exit statistics" defines it; the per-image counts are kept for resampling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mess.stats import IGNORE_INDEX, miou_from_sums


def _no_counts() -> np.ndarray:
    return np.zeros((0, 0), dtype=np.int64)


@dataclass
class Evaluation:
    """What one pass over labelled images measured.

    ``intersection`` and ``union`` are per image and class (``[N, C]`` ints): the dataset mIoU
    is :func:`mess.stats.miou_from_sums` of their column sums, and a resample of the images
    (a bootstrap) recomputes it from theirs. ``latency_ms`` is per image, in image order.
    """

    miou: float
    per_class_iou: list[float | None]
    exit_counts: list[int]
    latency_ms: list[float] = field(repr=False)
    intersection: np.ndarray = field(default_factory=_no_counts, repr=False)
    union: np.ndarray = field(default_factory=_no_counts, repr=False)

    @property
    def exit_fractions(self) -> list[float]:
        total = max(sum(self.exit_counts), 1)
        return [c / total for c in self.exit_counts]

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms)
        return {
            "miou": self.miou,
            "per_class_iou": self.per_class_iou,
            "exit_counts": self.exit_counts,
            "exit_fractions": self.exit_fractions,
            "latency_ms": {
                "mean": float(lat.mean()),
                "median": float(np.median(lat)),
                "p90": float(np.percentile(lat, 90)),
            },
            "images": len(self.latency_ms),
        }


def class_ious(intersection: np.ndarray, union: np.ndarray) -> list[float | None]:
    """Per-class IoU, None for a class with ``union == 0`` (the mean is :func:`miou_from_sums`)."""
    return [
        float(i) / float(u) if u > 0 else None for i, u in zip(intersection, union, strict=True)
    ]


def evaluate_model(
    model: str | bytes,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    threads: int = 1,
    warmup: int = 3,
    progress: Callable[[int], None] | None = None,
    providers: list[str] | None = None,
) -> Evaluation:
    """Run ``model`` on every ``(image float32 [3,H,W] in [0,1], mask int [H,W])``.

    Args:
        model: path or bytes of a tailored ONNX model (inputs ``image``; outputs ``logits``,
            ``exit``).
        samples: labelled images of the model's input size.
        num_classes: C.
        ignore_index: label to ignore.
        threads: onnxruntime intra-op threads.
        warmup: untimed runs on the first image.
        progress: called with 1 after each image.
        providers: onnxruntime execution providers (default: the CPU).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=providers or ["CPUExecutionProvider"])
    inters: list[np.ndarray] = []
    unions: list[np.ndarray] = []
    exits: dict[int, int] = {}
    latency: list[float] = []
    first = True
    for image, mask in samples:
        x = np.ascontiguousarray(image, dtype=np.float32)[None]
        if first:
            for _ in range(warmup):
                session.run(None, {"image": x})
            first = False
        start = time.perf_counter()
        logits, exit_index = session.run(["logits", "exit"], {"image": x})
        latency.append((time.perf_counter() - start) * 1e3)
        exits[int(exit_index)] = exits.get(int(exit_index), 0) + 1
        pred = logits[0].argmax(axis=0)
        target = np.asarray(mask)
        valid = target != ignore_index
        p, t = pred[valid], target[valid].astype(np.int64)
        inter = np.bincount(t[p == t], minlength=num_classes)[:num_classes]
        pred_count = np.bincount(p, minlength=num_classes)[:num_classes]
        target_count = np.bincount(t, minlength=num_classes)[:num_classes]
        inters.append(inter)
        unions.append(pred_count + target_count - inter)
        if progress is not None:
            progress(1)
    shape = (len(inters), num_classes)
    per_image_inter = np.asarray(inters, dtype=np.int64).reshape(shape)
    per_image_union = np.asarray(unions, dtype=np.int64).reshape(shape)
    inter_sum, union_sum = per_image_inter.sum(axis=0), per_image_union.sum(axis=0)
    miou, per_class = miou_from_sums(inter_sum, union_sum), class_ious(inter_sum, union_sum)
    k = max(exits) + 1 if exits else 0
    counts = [exits.get(i, 0) for i in range(k)]
    return Evaluation(miou, per_class, counts, latency, per_image_inter, per_image_union)
