"""Segmentation data sets on disk: Cityscapes, Pascal VOC 2012 and a plain folder.

Each loader lists the samples of one split up front (pairing every image with its mask and
failing on the first missing or extra file) and reads pixels lazily with :meth:`load`.
Problems raise :class:`DataError`, a ``ValueError`` whose one-line message names the file.

Layouts:

- Cityscapes: ``ROOT/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` and
  ``ROOT/gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png`` (19 classes).
- Pascal VOC 2012: ``ROOT/JPEGImages/<id>.jpg``, ``ROOT/SegmentationClass/<id>.png``
  (palette PNG whose indices are the class ids, 255 = border) and
  ``ROOT/ImageSets/Segmentation/<split>.txt`` (21 classes).
- Plain folder: ``ROOT/images/<stem>.(png|jpg|jpeg)`` and ``ROOT/masks/<stem>.png``
  (single-channel class ids, 255 = ignore), or the same under ``ROOT/<split>/``; an
  optional ``meta.json`` (``{"class_names": [...]}``) next to ``images/`` or in ``ROOT``.

MESS split names map to the data set's own: ``calibration`` reads ``val``.

Torch-free: numpy and Pillow (imported when a file is read or written).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mess.stats import IGNORE_INDEX

log = logging.getLogger(__name__)

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# MESS split names -> the names the public data sets use.
SPLIT_ALIASES = {"calibration": "val"}


class DataError(ValueError):
    """A data set that cannot be read; the one-line message names the file or folder."""


@dataclass(frozen=True)
class Sample:
    """One image and its mask."""

    stem: str
    image: Path
    mask: Path


class FolderSource:
    """The samples of one split of a data set on disk.

    Args:
        name: what to call it in messages, e.g. ``cityscapes:/data/cs (val)``.
        samples: the image/mask pairs, in a fixed order.
        class_names: one name per class id.
        rgb_palette: for masks stored as RGB colours, the colour of each class id (VOC).
    """

    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        name: str,
        samples: list[Sample],
        class_names: Iterable[str],
        *,
        rgb_palette: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.samples = samples
        self.class_names = tuple(class_names)
        self.rgb_palette = rgb_palette

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read sample ``index``.

        Returns:
            ``(image uint8 [H, W, 3] RGB, mask uint8 [H, W])``, 255 = ignore.

        Raises:
            DataError: unreadable file, image and mask sizes differ, or a label is out of
                range.
        """
        sample = self.samples[index]
        image = read_image(sample.image)
        mask = read_mask(sample.mask, rgb_palette=self.rgb_palette)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"image and mask sizes differ: {sample.image} is "
                f"{image.shape[1]}x{image.shape[0]}, {sample.mask} is "
                f"{mask.shape[1]}x{mask.shape[0]}"
            )
        check_labels(mask, self.num_classes, sample.mask)
        return image, mask

    def check(self) -> None:
        """Read every sample once; raises :class:`DataError` on the first bad one."""
        for index in range(len(self)):
            self.load(index)

    def subset(self, length: int) -> FolderSource:
        """The first ``length`` samples (for quick runs)."""
        return FolderSource(
            self.name, self.samples[:length], self.class_names, rgb_palette=self.rgb_palette
        )


# ----------------------------------------------------------------------------- files


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _open(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {_one_line(exc)}") from None
    return im


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB ``uint8 [H, W, 3]``; :class:`DataError` if unreadable."""
    im = _open(Path(path))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_mask(path: str | Path, *, rgb_palette: np.ndarray | None = None) -> np.ndarray:
    """Read a label mask as ``uint8 [H, W]`` class ids.

    Palette PNGs give their palette indices (VOC), grey PNGs their values. RGB masks are
    accepted only with ``rgb_palette`` (``[K, 3]``, the colour of each class id, index 255
    allowed) and map each colour to its index.

    Raises:
        DataError: unreadable, RGB without a palette, unknown colour, values above 255.
    """
    path = Path(path)
    im = _open(path)
    if im.mode in ("P", "L"):
        return np.array(im, dtype=np.uint8)
    if im.mode == "1":
        return np.array(im, dtype=np.uint8)
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 255):
            raise DataError(f"labels out of range in {path}: values above 255")
        return values.astype(np.uint8)
    if im.mode in ("RGB", "RGBA") and rgb_palette is not None:
        return _colours_to_ids(np.asarray(im.convert("RGB")), rgb_palette, path)
    raise DataError(f"mask must be a single-channel PNG, {path} is {im.mode}")


def _colours_to_ids(rgb: np.ndarray, palette: np.ndarray, path: Path) -> np.ndarray:
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    pal = palette.astype(np.int32)
    keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(keys, kind="stable")
    pos = np.clip(np.searchsorted(keys[order], codes), 0, len(keys) - 1)
    found = keys[order][pos] == codes
    if not found.all():
        r, g, b = rgb[~found][0]
        raise DataError(f"unknown mask colour ({r}, {g}, {b}) in {path}")
    return order[pos].astype(np.uint8)


def check_labels(mask: np.ndarray, num_classes: int, path: str | Path) -> None:
    """Raise :class:`DataError` if ``mask`` has a label >= ``num_classes`` other than 255."""
    bad = (mask >= num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        values = sorted({int(v) for v in np.unique(mask[bad])[:5]})
        raise DataError(
            f"labels out of range in {path}: {values} (num_classes={num_classes}, "
            f"ignore={IGNORE_INDEX})"
        )


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write ``uint8 [H, W]`` (grey) or ``[H, W, 3]`` (RGB) as a PNG."""
    from PIL import Image

    mode = "L" if array.ndim == 2 else "RGB"
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode).save(path, compress_level=1)


def voc_colormap(count: int = 256) -> np.ndarray:
    """The Pascal VOC palette, ``uint8 [count, 3]`` (class 255 = (224, 224, 192))."""
    cmap = np.zeros((count, 3), np.uint8)
    for i in range(count):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


# ----------------------------------------------------------------------------- layouts


def _root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root not found: {path}")
    return path


def _pair(
    images: dict[str, Path], masks: dict[str, Path], expected_mask: dict[str, Path]
) -> list[Sample]:
    """Pair images and masks by stem; fail on the first one without a partner."""
    for stem in sorted(images):
        if stem not in masks:
            raise DataError(f"image without mask: {images[stem]} (expected {expected_mask[stem]})")
    for stem in sorted(masks):
        if stem not in images:
            raise DataError(f"mask without image: {masks[stem]}")
    return [Sample(stem, images[stem], masks[stem]) for stem in sorted(images)]


def cityscapes(root: str | Path, split: str) -> FolderSource:
    """The Cityscapes split ``split`` (``train``, ``val``/``calibration``, ``test``).

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: the split name.

    Returns:
        The 19-class source with ``labelTrainIds`` masks.
    """
    base = _root(root)
    native = SPLIT_ALIASES.get(split, split)
    image_dir = base / "leftImg8bit" / native
    mask_dir = base / "gtFine" / native
    if not image_dir.is_dir():
        raise DataError(f"cityscapes split {split!r} not found: {image_dir}")
    if not mask_dir.is_dir():
        raise DataError(f"cityscapes split {split!r} has no annotations: {mask_dir}")
    images = {
        p.relative_to(image_dir).as_posix()[: -len("_leftImg8bit.png")]: p
        for p in image_dir.glob("*/*_leftImg8bit.png")
    }
    masks = {
        p.relative_to(mask_dir).as_posix()[: -len("_gtFine_labelTrainIds.png")]: p
        for p in mask_dir.glob("*/*_gtFine_labelTrainIds.png")
    }
    if not images:
        raise DataError(f"empty data set: no <city>/*_leftImg8bit.png in {image_dir}")
    expected = {s: mask_dir / f"{s}_gtFine_labelTrainIds.png" for s in images}
    if not masks and any(mask_dir.glob("*/*_gtFine_labelIds.png")):
        raise DataError(
            f"no *_gtFine_labelTrainIds.png in {mask_dir} (only labelIds): run cityscapesscripts' "
            "createTrainIdLabelImgs first"
        )
    samples = _pair(images, masks, expected)
    return FolderSource(f"cityscapes:{base} ({native})", samples, CITYSCAPES_CLASSES)


def voc(root: str | Path, split: str) -> FolderSource:
    """The Pascal VOC 2012 segmentation split ``split`` (``train``, ``val``/``calibration``).

    Any ``ImageSets/Segmentation/<split>.txt`` works (``trainval``, a custom ``test``).

    Args:
        root: the ``VOC2012`` folder (holding ``JPEGImages/``, ``SegmentationClass/``).
        split: the split name.

    Returns:
        The 21-class source; masks are palette PNGs whose indices are class ids.
    """
    base = _root(root)
    native = SPLIT_ALIASES.get(split, split)
    listing = base / "ImageSets" / "Segmentation" / f"{native}.txt"
    if not listing.is_file():
        raise DataError(f"voc split {split!r} not found: {listing}")
    try:
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {listing}: {_one_line(exc)}") from None
    if not ids:
        raise DataError(f"empty data set: {listing} lists no image ids")
    samples = []
    for stem in ids:
        image = base / "JPEGImages" / f"{stem}.jpg"
        mask = base / "SegmentationClass" / f"{stem}.png"
        has_image, has_mask = image.is_file(), mask.is_file()
        if has_image and not has_mask:
            raise DataError(f"image without mask: {image} (expected {mask})")
        if has_mask and not has_image:
            raise DataError(f"mask without image: {mask} (expected {image})")
        if not has_image:
            raise DataError(f"{listing} lists {stem!r} but {image} does not exist")
        samples.append(Sample(stem, image, mask))
    return FolderSource(f"voc:{base} ({native})", samples, VOC_CLASSES, rgb_palette=voc_colormap())


def plain_folder(
    root: str | Path, split: str | None = None, *, num_classes: int | None = None
) -> FolderSource:
    """A plain folder of ``images/`` and ``masks/`` with the same stems.

    With ``ROOT/<split>/images`` present, that split is read (``calibration`` falls back to
    ``val``); otherwise ``ROOT/images`` is read for any split. Class names come from
    ``meta.json`` (next to ``images/``, else in ``ROOT``); without it ``num_classes`` names
    the classes ``class_0..``, and without either the largest label in the masks decides.

    Args:
        root: the folder.
        split: split to read, or None for ``ROOT/images``.
        num_classes: number of classes, if no ``meta.json`` says it (must agree if one does).

    Returns:
        The source.
    """
    top = _root(root)
    base = _split_dir(top, split)
    image_dir, mask_dir = base / "images", base / "masks"
    if not mask_dir.is_dir():
        raise DataError(f"masks folder not found: {mask_dir}")
    images: dict[str, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            if path.stem in images:
                raise DataError(f"two images with stem {path.stem!r}: {images[path.stem]}, {path}")
            images[path.stem] = path
    masks = {p.stem: p for p in sorted(mask_dir.iterdir()) if p.suffix.lower() == ".png"}
    if not images:
        raise DataError(f"empty data set: no .png/.jpg images in {image_dir}")
    expected = {s: mask_dir / f"{s}.png" for s in images}
    samples = _pair(images, masks, expected)
    names = _class_names(top, base, num_classes, samples)
    return FolderSource(f"folder:{base}", samples, names)


def _split_dir(top: Path, split: str | None) -> Path:
    if split is not None:
        for name in (split, SPLIT_ALIASES.get(split)):
            if name and (top / name / "images").is_dir():
                return top / name
        if any(p.is_dir() and (p / "images").is_dir() for p in top.iterdir()):
            raise DataError(f"split {split!r} not found: {top / split / 'images'}")
    if not (top / "images").is_dir():
        raise DataError(f"images folder not found: {top / 'images'}")
    return top


def _class_names(
    top: Path, base: Path, num_classes: int | None, samples: list[Sample]
) -> tuple[str, ...]:
    for meta_path in dict.fromkeys((base / "meta.json", top / "meta.json")):
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                names = tuple(str(n) for n in meta["class_names"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(f"invalid meta.json {meta_path}: {_one_line(exc)}") from None
            if num_classes is not None and num_classes != len(names):
                raise DataError(
                    f"{meta_path} names {len(names)} classes but num_classes={num_classes}"
                )
            return names
    if num_classes is None:
        largest = -1
        for sample in samples:
            mask = read_mask(sample.mask)
            valid = mask[mask != IGNORE_INDEX]
            if valid.size:
                largest = max(largest, int(valid.max()))
        num_classes = max(largest + 1, 1)
        log.warning(
            "%s: no meta.json and no num_classes; assuming %d classes from the masks",
            base,
            num_classes,
        )
    return tuple(f"class_{i}" for i in range(num_classes))
