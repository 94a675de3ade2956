"""Data sets of MESS: the mess-synth benchmark and real formats on disk.

Torch-free (numpy, Pillow): :mod:`mess.data.synth` (the generator) and
:mod:`mess.data.folders` (Cityscapes, Pascal VOC 2012, plain folder). Torch side:
:mod:`mess.data.datasets` (:class:`SegmentationDataset`, :func:`build_dataset`) and
:mod:`mess.data.transforms`; those names are imported on first use, so importing this
package does not import torch.

Example:
    >>> from mess.data import build_dataset
    >>> train = build_dataset("synth:8", "train", size=(64, 64), train=True)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mess.data.folders import (
    CITYSCAPES_CLASSES,
    IGNORE_INDEX,
    VOC_CLASSES,
    DataError,
    FolderSource,
    cityscapes,
    plain_folder,
    voc,
)
from mess.data.synth import SynthConfig, SynthSource, class_names, generate, write_folder

if TYPE_CHECKING:
    from mess.data.datasets import SegmentationDataset, build_dataset
    from mess.data.transforms import IMAGENET_MEAN, IMAGENET_STD, NormalizeImage

_TORCH_SIDE = {
    "SegmentationDataset": "mess.data.datasets",
    "build_dataset": "mess.data.datasets",
    "IMAGENET_MEAN": "mess.data.transforms",
    "IMAGENET_STD": "mess.data.transforms",
    "NormalizeImage": "mess.data.transforms",
}

__all__ = [
    "CITYSCAPES_CLASSES",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VOC_CLASSES",
    "DataError",
    "FolderSource",
    "NormalizeImage",
    "SegmentationDataset",
    "SynthConfig",
    "SynthSource",
    "build_dataset",
    "cityscapes",
    "class_names",
    "generate",
    "plain_folder",
    "voc",
    "write_folder",
]


def __getattr__(name: str) -> Any:
    # Torch-side names load torch only when asked for.
    if name in _TORCH_SIDE:
        return getattr(importlib.import_module(_TORCH_SIDE[name]), name)
    raise AttributeError(f"module 'mess.data' has no attribute {name!r}")
