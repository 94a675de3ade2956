"""The MESS exit policy, numpy reference (torch-free).

For one exit's logits ``[C, h, w]`` at the head's own resolution:

1. per-pixel confidence = top-1 softmax probability, computed as ``1 / sum_c exp(l_c - max l)``;
2. boundary band: a pixel whose 3x3 neighbourhood (itself included, image border excluded)
   holds more than one predicted label lies on a label boundary, where confidence is low by
   nature. Such pixels take the *maximum* confidence of their 3x3 neighbourhood. (The paper
   uses a median; the maximum is exact in any implementation and is one ONNX ``MaxPool``.)
   The band is two pixels wide, one on each side of a boundary;
3. image score at pixel threshold ``tp`` = fraction of pixels whose confidence is ``>= tp``,
   computed in float32 as ``float32(count) / float32(h * w)``;
4. the image leaves at this exit iff ``score >= ti``.

Every threshold is compared in float32 (``tp`` and ``ti`` are cast to float32 first), the
same in calibration, the PyTorch runtime and the exported ONNX model, so that all three take
identical decisions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BAND_KERNEL = 3


def _pool3x3(x: np.ndarray, op: str) -> np.ndarray:
    """3x3 stride-1 max/min pooling over the last two axes, padding that never wins."""
    fill = -np.inf if op == "max" else np.inf
    padded = np.pad(
        x.astype(np.float32, copy=False),
        [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)],
        constant_values=fill,
    )
    h, w = x.shape[-2:]
    windows = [padded[..., i : i + h, j : j + w] for i in range(3) for j in range(3)]
    return np.max(windows, axis=0) if op == "max" else np.min(windows, axis=0)


def confidence_map(logits: np.ndarray) -> np.ndarray:
    """Per-pixel confidence after the boundary-band treatment.

    Args:
        logits: ``[..., C, h, w]`` float array.

    Returns:
        float32 array ``[..., h, w]`` with values in (0, 1].
    """
    x = np.asarray(logits, dtype=np.float32)
    top = x.max(axis=-3, keepdims=True)
    conf = np.float32(1.0) / np.exp(x - top).sum(axis=-3, dtype=np.float32)
    pred = x.argmax(axis=-3).astype(np.float32)
    band = _pool3x3(pred, "max") != _pool3x3(pred, "min")
    return np.where(band, _pool3x3(conf, "max"), conf).astype(np.float32)


def image_scores(logits: np.ndarray, pixel_thresholds: Sequence[float]) -> np.ndarray:
    """Image score at every pixel threshold.

    Args:
        logits: ``[..., C, h, w]``.
        pixel_thresholds: ``T`` thresholds.

    Returns:
        float32 ``[..., T]``: fraction of pixels with confidence >= each threshold.
    """
    conf = confidence_map(logits)
    thresholds = np.asarray(pixel_thresholds, dtype=np.float32)
    h, w = conf.shape[-2:]
    passed = conf[..., None, :, :] >= thresholds[:, None, None]
    counts = passed.sum(axis=(-2, -1)).astype(np.float32)
    return counts / np.float32(h * w)


def leaves(logits: np.ndarray, pixel_threshold: float, image_threshold: float) -> bool:
    """Whether an image leaves at this exit under thresholds ``(tp, ti)``."""
    score = image_scores(logits, [pixel_threshold])[..., 0]
    return bool(score >= np.float32(image_threshold))


def policy_flops(num_classes: int, height: int, width: int, num_thresholds: int = 1) -> int:
    """Elementwise operations of one exit decision (softmax, band, score): a cost estimate."""
    per_pixel = 5 * num_classes + 3 * 9 + 4 + 2 * num_thresholds
    return per_pixel * height * width
