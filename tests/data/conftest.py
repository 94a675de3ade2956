"""Tiny data sets written in the real on-disk formats (Cityscapes, VOC, plain folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mess.data.folders import voc_colormap

SIZE = (12, 16)  # H, W


def random_pair(
    rng: np.random.Generator, num_classes: int, size: tuple[int, int] = SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """A random RGB image and a mask of ids < num_classes with some 255."""
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    mask = rng.integers(0, num_classes, size, dtype=np.uint8)
    mask[0, :3] = 255
    return image, mask


def smooth_image(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A smooth image that JPEG keeps close to the original."""
    y = np.linspace(0, 1, size[0])[:, None, None]
    x = np.linspace(0, 1, size[1])[None, :, None]
    colour = rng.uniform(40, 200, 3)
    return np.clip(colour + 40 * y + 30 * x, 0, 255).astype(np.uint8)


def make_cityscapes(
    root: Path, split: str = "val", cities: dict[str, int] | None = None, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``leftImg8bit/`` + ``gtFine/ *_labelTrainIds.png``; returns stem -> arrays."""
    rng = np.random.default_rng(seed)
    written = {}
    for city, count in (cities or {"bochum": 1, "aachen": 2}).items():
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            stem = f"{city}_000000_{i:06d}"
            image, mask = random_pair(rng, 19)
            Image.fromarray(image).save(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            )
            Image.fromarray(mask, "L").save(
                root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png"
            )
            written[f"{city}/{stem}"] = (image, mask)
    return written


def save_palette_png(path: Path, mask: np.ndarray) -> None:
    """A VOC-style palette PNG: the pixel values are palette indices."""
    im = Image.fromarray(mask, "P")
    im.putpalette(voc_colormap().tobytes())
    im.save(path)


def make_voc(
    root: Path, splits: dict[str, list[str]] | None = None, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``JPEGImages/``, ``SegmentationClass/`` (palette PNGs), ``ImageSets/``."""
    rng = np.random.default_rng(seed)
    splits = splits or {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    written = {}
    for split, ids in splits.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for stem in ids:
            image = smooth_image(rng)
            mask = random_pair(rng, 21)[1]
            Image.fromarray(image).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
            save_palette_png(root / "SegmentationClass" / f"{stem}.png", mask)
            written[stem] = (image, mask)
    return written


def make_plain(
    root: Path,
    stems: list[str],
    *,
    num_classes: int = 5,
    suffix: str = ".png",
    class_names: list[str] | None = None,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``images/`` + ``masks/`` (+ ``meta.json`` when class_names is given)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    written = {}
    for stem in stems:
        image, mask = random_pair(rng, num_classes)
        if suffix != ".png":
            image = smooth_image(rng)
        Image.fromarray(image).save(root / "images" / f"{stem}{suffix}")
        Image.fromarray(mask, "L").save(root / "masks" / f"{stem}.png")
        written[stem] = (image, mask)
    if class_names is not None:
        (root / "meta.json").write_text(json.dumps({"class_names": class_names}))
    return written


@pytest.fixture
def cityscapes_root(tmp_path):
    root = tmp_path / "cityscapes"
    return root, make_cityscapes(root)


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOC2012"
    return root, make_voc(root)


@pytest.fixture
def plain_root(tmp_path):
    root = tmp_path / "plain"
    names = ["a", "b", "c", "d", "e"]
    return root, make_plain(root, ["x1", "x0", "x2"], class_names=names)
