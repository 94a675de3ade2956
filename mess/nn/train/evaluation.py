"""Validation mIoU of a supernet's exits, from a confusion matrix per exit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mess.nn.normalize import NormalizeLayer
from mess.nn.supernet import Supernet
from mess.stats import IGNORE_INDEX, miou_from_sums


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``[C, C]`` int64 counts, rows = label, columns = prediction; ignored pixels left out."""
    valid = target != ignore_index
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, -1)


def miou_from_confusion(confusion: torch.Tensor) -> float:
    """Mean IoU over classes present in labels or predictions (``union > 0``), in [0, 1]."""
    counts = confusion.to(torch.int64).cpu().numpy()
    inter = np.diag(counts)
    return miou_from_sums(inter, counts.sum(0) + counts.sum(1) - inter)


@torch.no_grad()
def evaluate(
    supernet: Supernet,
    dataset: Dataset,
    exits: Sequence[str],
    *,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    workers: int = 0,
) -> dict[str, float]:
    """mIoU of each exit on ``dataset`` (one backbone pass per batch, logits upsampled).

    Args:
        supernet: the supernet; evaluated in eval mode, its previous modes restored.
        dataset: yields ``(image [3,H,W] in [0,1], mask [H,W])``.
        exits: exit ids to measure.
        batch_size: images per pass.
        device: where to run.
        workers: DataLoader workers.

    Returns:
        dict exit id -> mIoU in [0, 1].
    """
    modes = {m: m.training for m in supernet.modules()}
    supernet.eval()
    normalize = NormalizeLayer().to(device)
    c = supernet.num_classes
    confusion = {eid: torch.zeros(c, c, dtype=torch.int64, device=device) for eid in exits}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    try:
        for images, masks in loader:
            images, masks = images.to(device), masks.to(device)
            out = supernet(normalize(images), exits=list(exits))
            for eid, logits in out.items():
                confusion[eid] += confusion_matrix(logits.argmax(1), masks, c)
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return {eid: miou_from_confusion(m.cpu()) for eid, m in confusion.items()}
