"""The MESS exit policy in PyTorch, batched; same decisions as :mod:`mess.policy`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _max3x3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x.unsqueeze(1), 3, stride=1, padding=1).squeeze(1)


def confidence_map(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel confidence with the boundary band: ``[B, C, h, w]`` -> float32 ``[B, h, w]``."""
    x = logits.float()
    top = x.amax(dim=1, keepdim=True)
    conf = 1.0 / torch.exp(x - top).sum(dim=1)
    pred = x.argmax(dim=1).float()
    band = _max3x3(pred) != -_max3x3(-pred)
    return torch.where(band, _max3x3(conf), conf)


def image_scores(logits: torch.Tensor, pixel_thresholds: Sequence[float]) -> torch.Tensor:
    """Image scores ``[B, T]`` (float32): fraction of pixels with confidence >= each threshold."""
    conf = confidence_map(logits)
    thresholds = torch.tensor(
        [float(t) for t in pixel_thresholds], dtype=torch.float32, device=conf.device
    )
    passed = conf.unsqueeze(1) >= thresholds.view(1, -1, 1, 1)
    counts = passed.flatten(2).sum(dim=2).float()
    h, w = conf.shape[-2:]
    return counts / torch.tensor(float(h * w), dtype=torch.float32, device=conf.device)


def leaves(logits: torch.Tensor, pixel_threshold: float, image_threshold: float) -> torch.Tensor:
    """Boolean ``[B]``: whether each image leaves at this exit under ``(tp, ti)``."""
    score = image_scores(logits, [pixel_threshold])[:, 0]
    return score >= torch.tensor(image_threshold, dtype=torch.float32, device=score.device)
