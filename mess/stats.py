"""Exit statistics: the ``mess-stats`` v1 file (torch-free).

Computed once per supernet on a calibration split (``mess calibrate``), they hold everything
the search needs: per sample and exit the per-class pixel counts (intersection with the
target, predicted) and the image scores at each pixel threshold.

mIoU of any assignment ``x(n)`` of samples to exits is exact (docs/DESIGN.md, "Exit statistics")::

    I_c = sum_n intersection[n, x(n), c]
    U_c = sum_n predicted[n, x(n), c] + target[n, c] - intersection[n, x(n), c]
    mIoU = mean of I_c / U_c over the classes with U_c > 0

The mean is accumulated in float64 class by class in class order (see :func:`miou_from_sums`);
the search computes it the same way so that ties compare identically everywhere.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mess.fileio import atomic_write
from mess.space import FINAL

# Label value of pixels that count for no class (Cityscapes, VOC and mess-synth use 255).
IGNORE_INDEX = 255

FORMAT = "mess-stats"
VERSION = 1
ARRAYS = ("meta", "intersection", "predicted", "target", "confidence")


class StatsError(ValueError):
    """The statistics are malformed; the message names the array and the first bad index."""


@dataclass
class Stats:
    """The ``mess-stats`` v1 arrays. Exit axis: the ``E`` early exits of ``meta["exits"]``,
    then ``final`` at index ``E``.

    Attributes:
        meta: the JSON metadata (format, version, classes, pixel thresholds, exits, ...).
        intersection: ``(N, E+1, C)`` integer pixel counts with prediction = target = c.
        predicted: ``(N, E+1, C)`` integer pixel counts predicted c (ignored pixels excluded).
        target: ``(N, C)`` integer pixel counts labelled c.
        confidence: ``(N, E+1, T)`` float image scores at each pixel threshold.
    """

    meta: dict[str, Any]
    intersection: np.ndarray
    predicted: np.ndarray
    target: np.ndarray
    confidence: np.ndarray

    @property
    def num_samples(self) -> int:
        return int(self.target.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.target.shape[1])

    @property
    def exits(self) -> list[dict[str, Any]]:
        """The early exits' metadata: ``id``, ``position``, ``position_index``, ``head``."""
        return list(self.meta.get("exits", []))

    @property
    def exit_ids(self) -> list[str]:
        """The ``E`` early exit ids in file order, then ``"final"``."""
        return [str(e["id"]) for e in self.exits] + [FINAL]

    @property
    def pixel_thresholds(self) -> list[float]:
        return [float(t) for t in self.meta.get("pixel_thresholds", [])]

    @property
    def class_names(self) -> list[str]:
        names = self.meta.get("class_names")
        if names:
            return [str(n) for n in names]
        return [f"class{i}" for i in range(self.num_classes)]


def _first(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _fmt(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float range
        return False


def _check_meta(meta: Any, n: int, e1: int, c: int, t: int) -> None:
    if not isinstance(meta, dict):
        raise StatsError("meta must be a JSON object")
    if meta.get("format") != FORMAT:
        raise StatsError(f"meta.format must be {FORMAT!r}, got {meta.get('format')!r}")
    if meta.get("version") != VERSION:
        raise StatsError(f"meta.version {meta.get('version')!r} is not supported (only 1)")
    if meta.get("num_classes") != c:
        raise StatsError(f"meta.num_classes is {meta.get('num_classes')!r}, the arrays hold {c}")
    if meta.get("num_samples") != n:
        raise StatsError(f"meta.num_samples is {meta.get('num_samples')!r}, the arrays hold {n}")
    names = meta.get("class_names")
    if names is not None and (
        not isinstance(names, list) or len(names) != c or not all(isinstance(x, str) for x in names)
    ):
        raise StatsError(f"meta.class_names must be a list of {c} strings")
    thresholds = meta.get("pixel_thresholds")
    if not isinstance(thresholds, list) or len(thresholds) != t:
        raise StatsError(f"meta.pixel_thresholds must be a list of {t} numbers (confidence T)")
    for i, v in enumerate(thresholds):
        if isinstance(v, bool) or not isinstance(v, int | float) or not _finite(v):
            raise StatsError(f"meta.pixel_thresholds[{i}] is not a finite number: {v!r:.40}")
        if i and v <= thresholds[i - 1]:
            raise StatsError(
                f"meta.pixel_thresholds must increase: [{i}] = {v} after {thresholds[i - 1]}"
            )
    exits = meta.get("exits")
    if not isinstance(exits, list) or len(exits) != e1 - 1:
        raise StatsError(f"meta.exits must list the {e1 - 1} early exits of the exit axis")
    seen: set[str] = set()
    position_index: dict[str, int] = {}
    for i, ex in enumerate(exits):
        if not isinstance(ex, dict):
            raise StatsError(f"meta.exits[{i}] must be an object")
        for key, kind in (("id", str), ("position", str), ("position_index", int)):
            value = ex.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise StatsError(f"meta.exits[{i}].{key} missing or not a {kind.__name__}")
        eid, pos, idx = ex["id"], ex["position"], ex["position_index"]
        if eid == FINAL or eid in seen:
            raise StatsError(f"meta.exits[{i}].id {eid!r} is reserved or repeated")
        seen.add(eid)
        if position_index.setdefault(pos, idx) != idx:
            raise StatsError(f"meta.exits[{i}]: position {pos!r} has two position_index values")


def validate_stats(stats: Stats) -> None:
    """Check every array and the metadata of ``stats``.

    Args:
        stats: the statistics to check.

    Raises:
        StatsError: at the first problem, naming the array and the first bad index.
    """
    arrays = {
        "intersection": stats.intersection,
        "predicted": stats.predicted,
        "target": stats.target,
        "confidence": stats.confidence,
    }
    for name, arr in arrays.items():
        if not isinstance(arr, np.ndarray):
            raise StatsError(f"{name} is missing or not an array")
    ndims = {"intersection": 3, "predicted": 3, "target": 2, "confidence": 3}
    for name, nd in ndims.items():
        if arrays[name].ndim != nd:
            raise StatsError(f"{name} must have {nd} dimensions, got shape {arrays[name].shape}")
    for name in ("intersection", "predicted", "target"):
        if not np.issubdtype(arrays[name].dtype, np.integer):
            raise StatsError(f"{name} must hold integers, got {arrays[name].dtype}")
    if not np.issubdtype(stats.confidence.dtype, np.floating):
        raise StatsError(f"confidence must hold floats, got {stats.confidence.dtype}")
    n, c = stats.target.shape
    e1 = stats.intersection.shape[1]
    t = stats.confidence.shape[2]
    if e1 < 1:
        raise StatsError("intersection has no exit (the final exit is required)")
    if t < 1:
        raise StatsError("confidence has no pixel threshold")
    for name, shape in (
        ("intersection", (n, e1, c)),
        ("predicted", (n, e1, c)),
        ("confidence", (n, e1, t)),
    ):
        if arrays[name].shape != shape:
            raise StatsError(f"{name} has shape {arrays[name].shape}, expected {shape}")
    _check_meta(stats.meta, n, e1, c, t)

    for name in ("intersection", "predicted", "target"):
        bad = arrays[name] < 0
        if bad.any():
            i = _first(bad)
            raise StatsError(f"{name}{_fmt(i)} is negative ({arrays[name][i]})")
    pred_sum = stats.predicted.sum(axis=2, dtype=np.int64)
    tgt_sum = stats.target.sum(axis=1, dtype=np.int64)
    bad = pred_sum != tgt_sum[:, None]
    if bad.any():
        i = _first(bad)
        raise StatsError(
            f"predicted{_fmt(i)} sums to {pred_sum[i]} pixels over classes, but target[{i[0]}] "
            f"sums to {tgt_sum[i[0]]}"
        )
    bad = stats.intersection > stats.predicted
    if bad.any():
        i = _first(bad)
        raise StatsError(
            f"intersection{_fmt(i)} = {stats.intersection[i]} exceeds predicted "
            f"({stats.predicted[i]})"
        )
    bad = stats.intersection > stats.target[:, None, :]
    if bad.any():
        i = _first(bad)
        raise StatsError(
            f"intersection{_fmt(i)} = {stats.intersection[i]} exceeds target "
            f"({stats.target[i[0], i[2]]})"
        )
    conf = stats.confidence
    bad = ~np.isfinite(conf)
    if bad.any():
        raise StatsError(f"confidence{_fmt(_first(bad))} is not finite")
    bad = (conf < 0) | (conf > 1)
    if bad.any():
        i = _first(bad)
        raise StatsError(f"confidence{_fmt(i)} = {conf[i]} is outside [0, 1]")
    bad = np.diff(conf, axis=2) > 0
    if bad.any():
        i = _first(bad)
        j = (i[0], i[1], i[2] + 1)
        raise StatsError(
            f"confidence{_fmt(j)} = {conf[j]} exceeds confidence{_fmt(i)} = {conf[i]}: scores "
            "must not increase along the pixel thresholds"
        )


def load_stats(path: str | Path) -> Stats:
    """Read and validate a ``mess-stats`` v1 file.

    Args:
        path: the ``.npz`` file.

    Returns:
        The validated :class:`Stats`.

    Raises:
        StatsError: unreadable file, missing arrays or invalid content.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [a for a in ARRAYS if a not in data.files]
            if missing:
                raise StatsError(f"{path}: missing array {missing[0]!r}")
            arrays = {a: data[a] for a in ARRAYS}
    except StatsError:
        raise
    except FileNotFoundError:
        raise StatsError(f"{path}: no such file") from None
    except MemoryError:  # an array header declaring more than memory holds
        raise StatsError(f"{path}: an array is larger than memory") from None
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,  # truncated or corrupt archive, wrong CRC
        zlib.error,
        NotImplementedError,  # unknown compression method
        RuntimeError,  # encrypted member
    ) as exc:
        raise StatsError(f"{path}: not a readable .npz file ({exc})") from None
    raw = arrays["meta"]
    if raw.ndim != 0 or raw.dtype.kind not in "US":
        raise StatsError(f"{path}: meta must be a 0-d string array holding JSON")
    try:
        meta = json.loads(str(raw))
    except (ValueError, RecursionError) as exc:  # also: too deep, integers of 4300+ digits
        raise StatsError(f"{path}: meta is not valid JSON: {exc}") from None
    stats = Stats(
        meta=meta,
        intersection=arrays["intersection"],
        predicted=arrays["predicted"],
        target=arrays["target"],
        confidence=arrays["confidence"],
    )
    try:
        validate_stats(stats)
    except StatsError as exc:
        raise StatsError(f"{path}: {exc}") from None
    return stats


def save_stats(stats: Stats, path: str | Path) -> None:
    """Validate and write ``stats`` atomically (:func:`mess.fileio.atomic_write`).

    Args:
        stats: the statistics.
        path: the ``.npz`` file to write.
    """
    validate_stats(stats)
    path = Path(path)
    with atomic_write(path) as fh:
        np.savez_compressed(
            fh,
            meta=np.array(json.dumps(stats.meta)),
            intersection=stats.intersection,
            predicted=stats.predicted,
            target=stats.target,
            confidence=stats.confidence,
        )


def miou_from_sums(intersection: np.ndarray, union: np.ndarray) -> float:
    """The canonical mIoU of summed per-class counts.

    Classes with ``union == 0`` are left out; the IoUs are added in float64 in class order,
    then divided by the number of classes kept (0.0 when no class is kept). The search
    engines repeat exactly these operations so that equal mIoUs compare equal.

    Args:
        intersection: ``(C,)`` integer sums ``I_c``.
        union: ``(C,)`` integer sums ``U_c``.

    Returns:
        The mIoU in [0, 1].
    """
    total = 0.0
    kept = 0
    for i, u in zip(intersection.tolist(), union.tolist(), strict=True):
        if u > 0:
            total += float(i) / float(u)
            kept += 1
    return total / kept if kept else 0.0


def _sums(stats: Stats, assignment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(assignment)
    n, e1 = stats.num_samples, stats.intersection.shape[1]
    if x.shape != (n,) or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"assignment must be an integer array of shape ({n},)")
    if n and (x.min() < 0 or x.max() >= e1):
        raise ValueError(f"assignment holds exit indices outside 0..{e1 - 1}")
    rows = np.arange(n)
    inter = stats.intersection[rows, x].sum(axis=0, dtype=np.int64)
    pred = stats.predicted[rows, x].sum(axis=0, dtype=np.int64)
    union = pred + stats.target.sum(axis=0, dtype=np.int64) - inter
    return inter, union


def miou(stats: Stats, assignment: np.ndarray) -> float:
    """Exact mIoU when sample ``n`` is segmented by exit ``assignment[n]``.

    Args:
        stats: the exit statistics.
        assignment: ``(N,)`` integer exit index per sample (``E`` = final).

    Returns:
        The mIoU (section 6), a number in [0, 1].
    """
    return miou_from_sums(*_sums(stats, assignment))


def per_class_iou(stats: Stats, assignment: np.ndarray) -> np.ndarray:
    """Per-class IoU of an assignment; NaN for classes with an empty union.

    Args:
        stats: the exit statistics.
        assignment: ``(N,)`` integer exit index per sample.

    Returns:
        ``(C,)`` float64 IoUs.
    """
    inter, union = _sums(stats, assignment)
    out = np.full(inter.shape, np.nan)
    keep = union > 0
    out[keep] = inter[keep] / union[keep]
    return out
