"""Torch data sets: :class:`SegmentationDataset` and :func:`build_dataset`.

A data set yields ``(image float32 [3, H, W] RGB in [0, 1], mask int64 [H, W])`` with
255 = ignore. It is not normalised: the supernet normalises its own input.

Augmentation is deterministic: with ``seed`` set, sample ``i`` in epoch ``e`` is
transformed with a generator seeded from ``(seed, e, i)``, whatever the worker or the
order; call :meth:`SegmentationDataset.set_epoch` each epoch (as with
``DistributedSampler``) to get new augmentations.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from mess.data import folders
from mess.data.folders import IGNORE_INDEX, DataError
from mess.data.synth import SPLITS, SynthSource, config_from_spec
from mess.data.transforms import PairTransform, eval_transform, train_transform

log = logging.getLogger(__name__)

SYNTH_LENGTHS = {"train": 2000, "calibration": 500, "test": 500}
SYNTH_DEFAULT_CLASSES = 8
SYNTH_DEFAULT_SIZE = (64, 64)
SPEC_KINDS = ("synth", "cityscapes", "voc", "folder")


class ArraySource(Protocol):
    """What a data set reads from: numpy ``(image, mask)`` pairs plus class metadata."""

    name: str
    class_names: tuple[str, ...]
    ignore_index: int

    @property
    def num_classes(self) -> int: ...

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]: ...


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``uint8 [H, W, 3]`` + ``uint8 [H, W]`` to ``float32 [3, H, W]`` in [0, 1] + ``int64``."""
    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    return img.div_(255.0), torch.from_numpy(mask.astype(np.int64))


class SegmentationDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A segmentation data set over an :class:`ArraySource`.

    Args:
        source: where samples come from (synth, Cityscapes, VOC, plain folder).
        transform: joint transform (see :mod:`mess.data.transforms`), or None.
        seed: seed of the augmentation; None draws from torch's global generator.

    Attributes:
        num_classes, class_names, ignore_index: of the source.
    """

    def __init__(
        self,
        source: ArraySource,
        *,
        transform: PairTransform | None = None,
        seed: int | None = 0,
    ) -> None:
        self.source = source
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.num_classes = source.num_classes
        self.class_names = tuple(source.class_names)
        self.ignore_index = IGNORE_INDEX

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentations of ``epoch`` (call at the start of every epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def generator(self, index: int) -> torch.Generator | None:
        """The generator of sample ``index`` in the current epoch (None without a seed)."""
        if self.seed is None:
            return None
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2)
        seed = (int(state[0]) << 32 | int(state[1])) & ((1 << 63) - 1)
        return torch.Generator().manual_seed(seed)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, mask = to_tensors(*self.source.load(index))
        if self.transform is not None:
            image, mask = self.transform(image, mask, self.generator(index))
        return image, mask

    def __repr__(self) -> str:
        return f"SegmentationDataset({self.source.name}, {len(self)} samples)"


def build_dataset(
    spec: str,
    split: str,
    *,
    size: tuple[int, int] | None = None,
    num_classes: int | None = None,
    train: bool = False,
    augment_scale: tuple[float, float] = (0.5, 2.0),
    length: int | None = None,
    seed: int | None = 0,
) -> SegmentationDataset:
    """Build a data set from a spec string.

    Specs: ``synth`` or ``synth:N_CLASSES`` (mess-synth, generated on the fly), either
    followed by ``:KEY=VALUE`` generator options ``version``, ``seed``,
    ``min_difficulty``, ``max_difficulty`` (e.g. ``synth:19:version=2:seed=3``; see
    :func:`mess.data.synth.config_from_spec`), ``cityscapes:DIR``, ``voc:DIR``,
    ``folder:DIR``. Splits: ``train``, ``calibration``
    (Cityscapes/VOC ``val``), ``test``, or a data set's own split name.

    Args:
        spec: what to read.
        split: which split.
        size: ``(height, width)``. synth renders at it (default 64x64); real data sets
            resize to it for evaluation and crop to it for training; None keeps sizes.
        num_classes: synth: number of classes (default 8); others: checked against the
            data set (folder: names the classes when there is no ``meta.json``).
        train: apply the training augmentation (random scale, crop, flip).
        augment_scale: the augmentation's range of scale factors (with ``train``).
        length: synth: number of images (defaults: train 2000, calibration 500, test
            500); others: keep the first ``length`` samples.
        seed: augmentation seed (see :class:`SegmentationDataset`); synth images do not
            depend on it, so its splits stay the same benchmark.

    Returns:
        The data set.

    Raises:
        DataError: unknown spec, missing files, or a class count that does not match.

    Example:
        >>> ds = build_dataset("synth:8", "calibration", size=(64, 64), length=10)
        >>> image, mask = ds[0]
    """
    kind, _, arg = spec.partition(":")
    if kind not in SPEC_KINDS:
        raise DataError(
            f"unknown data set {spec!r}: expected synth[:N][:KEY=VALUE...], cityscapes:DIR, "
            "voc:DIR or folder:DIR"
        )
    if length is not None and length < 1:
        raise DataError(f"length must be >= 1, got {length}")
    source: ArraySource
    if kind == "synth":
        source = _synth_source(arg, split, size, num_classes, length)
        size = size or SYNTH_DEFAULT_SIZE
        transform = train_transform(size, scale=augment_scale) if train else None
    else:
        if not arg:
            raise DataError(f"{kind} needs a folder: {kind}:DIR")
        root = Path(arg)
        if kind == "cityscapes":
            real = folders.cityscapes(root, split)
        elif kind == "voc":
            real = folders.voc(root, split)
        else:
            real = folders.plain_folder(root, split, num_classes=num_classes)
        if num_classes is not None and num_classes != real.num_classes:
            raise DataError(f"{spec} has {real.num_classes} classes, not num_classes={num_classes}")
        source = real.subset(length) if length is not None else real
        transform = train_transform(size, scale=augment_scale) if train else eval_transform(size)
    log.info("data set %s: %d samples, %d classes", source.name, len(source), source.num_classes)
    return SegmentationDataset(source, transform=transform, seed=seed)


def _synth_source(
    arg: str,
    split: str,
    size: tuple[int, int] | None,
    num_classes: int | None,
    length: int | None,
) -> SynthSource:
    split = "calibration" if split == "val" else split
    if split not in SPLITS:
        raise DataError(f"unknown synth split {split!r}: expected one of {', '.join(SPLITS)}")
    try:
        config = config_from_spec(
            arg,
            num_classes=num_classes,
            size=size or SYNTH_DEFAULT_SIZE,
            default_classes=SYNTH_DEFAULT_CLASSES,
        )
    except ValueError as exc:
        msg = str(exc)
        raise DataError(msg if msg.startswith("synth:") else f"synth: {msg}") from None
    return SynthSource(config, split, length or SYNTH_LENGTHS[split])
