"""Calibration: exit statistics (``mess-stats`` v1) of every exit on a data split.

One backbone pass per batch evaluates every exit. The arrays are allocated once for the whole
split, so memory does not grow with the data set beyond them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mess.nn.normalize import NormalizeLayer
from mess.nn.policy import image_scores
from mess.nn.supernet import Supernet
from mess.space import FINAL
from mess.stats import IGNORE_INDEX

DEFAULT_PIXEL_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def confusion_counts(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image class counts, ignored pixels excluded.

    Args:
        pred: ``[B, H, W]`` predicted class ids.
        target: ``[B, H, W]`` labels (``ignore_index`` = ignore).

    Returns:
        ``(intersection, predicted, target)``, each int64 ``[B, C]``.
    """
    b = pred.shape[0]
    valid = target != ignore_index
    offsets = (torch.arange(b, device=pred.device) * num_classes).view(b, 1, 1)
    size = b * num_classes

    def count(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        flat = (values + offsets)[mask]
        return torch.bincount(flat, minlength=size).view(b, num_classes)

    hit = valid & (pred == target)
    return count(target, hit), count(pred, valid), count(target.clamp(0, num_classes - 1), valid)


def calibrate(
    supernet: Supernet,
    dataset: Dataset,
    *,
    pixel_thresholds: Sequence[float] = DEFAULT_PIXEL_THRESHOLDS,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] | None = None,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Compute the exit statistics of every exit of ``supernet`` on ``dataset``.

    Args:
        supernet: the trained supernet (put in eval mode here).
        dataset: yields ``(image [3,H,W] in [0,1], mask [H,W] int64, 255 = ignore)``.
        pixel_thresholds: the ``T`` pixel thresholds, increasing.
        batch_size: images per backbone pass.
        device: where to run.
        class_names: names for the stats metadata (default ``class0..``).
        workers: DataLoader workers.
        progress: called with the number of images done after each batch.

    Returns:
        dict of the ``mess-stats`` v1 arrays: ``meta`` (JSON str), ``intersection``,
        ``predicted``, ``target``, ``confidence``.
    """
    thresholds = [float(t) for t in pixel_thresholds]
    if sorted(set(thresholds)) != thresholds:
        raise ValueError("pixel thresholds must be strictly increasing")
    n, c = len(dataset), supernet.num_classes  # type: ignore[arg-type]
    early = supernet.early_exit_ids
    e1, t = len(early) + 1, len(thresholds)
    intersection = np.zeros((n, e1, c), dtype=np.int64)
    predicted = np.zeros((n, e1, c), dtype=np.int64)
    target = np.zeros((n, c), dtype=np.int64)
    confidence = np.zeros((n, e1, t), dtype=np.float32)

    device = torch.device(device)
    supernet = supernet.to(device).eval()
    normalize = NormalizeLayer().to(device)
    positions = sorted({supernet.position_of(e).index for e in early})
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    start = 0
    with torch.inference_mode():
        for images, masks in loader:
            images, masks = images.to(device), masks.to(device)
            if masks.max() >= c and (masks[masks != IGNORE_INDEX] >= c).any():
                raise ValueError(f"labels out of range for {c} classes in batch at {start}")
            b, size = images.shape[0], images.shape[-2:]
            features, final_logits = supernet.forward_features(
                normalize(images), positions, final=True
            )
            rows = slice(start, start + b)
            for k, eid in enumerate([*early, FINAL]):
                if eid == FINAL:
                    logits = final_logits
                else:
                    logits = supernet.exit_head(eid)(features[supernet.position_of(eid).index])
                assert logits is not None
                confidence[rows, k] = image_scores(logits, thresholds).cpu().numpy()
                up = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
                inter, pred, tgt = confusion_counts(up.argmax(1), masks, c)
                intersection[rows, k] = inter.cpu().numpy()
                predicted[rows, k] = pred.cpu().numpy()
                if k == 0:
                    target[rows] = tgt.cpu().numpy()
            start += b
            if progress is not None:
                progress(b)
    meta = {
        "format": "mess-stats",
        "version": 1,
        "num_classes": c,
        "class_names": list(class_names or [f"class{i}" for i in range(c)]),
        "ignore_index": IGNORE_INDEX,
        "pixel_thresholds": thresholds,
        "exits": [
            {
                "id": eid,
                "position": supernet.position_of(eid).name,
                "position_index": supernet.position_of(eid).index,
                "head": eid.rsplit("/", 1)[1],
            }
            for eid in early
        ],
        "num_samples": n,
        "supernet": supernet.digest(),
    }
    return {
        "meta": np.array(json.dumps(meta)),
        "intersection": intersection,
        "predicted": predicted,
        "target": target,
        "confidence": confidence,
    }
