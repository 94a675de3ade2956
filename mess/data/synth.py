"""mess-synth: procedural street-like scenes whose difficulty varies from image to image.

Every image is drawn from its own ``numpy.random.Generator(PCG64(seed))`` with the seed
derived from ``(config.seed, split, index)`` (:func:`image_seed`), so an image depends on
nothing else: the same call gives the same pixels in any order and in any worker (on the
same numpy build; the mask uses only exact arithmetic). The splits use disjoint seed
ranges.

A scene is laid out like a street seen from a car: sky above a skyline of buildings (and
tree lines), a road in perspective towards a vanishing point, sidewalks, and objects whose
size follows the ground plane (cars, trucks and buses on the road, people, poles, signs
and trees on the sidewalks), drawn far to near so near objects occlude far ones.

The first draw of each image is its ``difficulty`` in [0, 1]. It sets the number of
objects and how far away (small) they are, how many building segments there are, how far
instance colours wander from their class colour (including hues borrowed from other
classes), texture, illumination gradients and cast shadows, contrast, blur and noise. Easy
images are a few big flat regions of well separated colours; hard ones are many small,
low-contrast, textured, noisy, blurred and occluded objects, where colour alone no longer
tells the class but the layout still does.

Version 2 (``SynthConfig(version=2)``) makes depth matter. On hard images, classes come
in look-alike groups (road and sidewalk; car, truck, bus and train; building, wall and
fence; person, rider and pole; vegetation and terrain; bicycle and motorcycle; traffic
sign and traffic light) whose instances take their colour and texture from one shared
distribution per image, and whose parts (tyres, windows, lamps, heads, lane markings,
trunks) fade into the body colour: a small window no longer tells them apart, only the
object's size, shape or place in the scene does. The share of the group look grows with
difficulty from none below 0.2 to all above 0.7, so easy images stay easy. Version 2 also
stratifies the difficulties of a split (:func:`stratified_unit`), so that every split,
of any length, has nearly the same difficulty histogram (:func:`split_balance`). Version 1
is kept pixel for pixel.

This module needs only numpy (Pillow for :func:`write_folder`); it never imports torch.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from mess.data.folders import CITYSCAPES_CLASSES, IGNORE_INDEX
from mess.fileio import write_text_atomic

log = logging.getLogger(__name__)

SPLITS = ("train", "calibration", "test")
MIN_CLASSES, MAX_CLASSES = 4, 19
# Seeds: base_seed * 3 * 2**32 + split offset + index, so that every (seed, split, index)
# has its own integer and the three splits never share one.
_INDEX_LIMIT = 1 << 32
_SPLIT_OFFSET = {"train": 0, "calibration": 1 << 32, "test": 2 << 32}

# Order in which classes are kept when fewer than 19 are asked for: most frequent pixels
# first (measured on the 19-class rendering), except that sky, the background every
# scene starts from, is always kept.
_PRIORITY = (
    "road",
    "sky",
    "building",
    "car",
    "vegetation",
    "sidewalk",
    "pole",
    "person",
    "terrain",
    "truck",
    "bus",
    "wall",
    "traffic sign",
    "fence",
    "motorcycle",
    "bicycle",
    "rider",
    "traffic light",
    "train",
)

_RGB = tuple[float, float, float]
# Class colours of an easy image (RGB): natural-looking but well separated.
_BASE: dict[str, _RGB] = {
    "road": (88, 84, 92),
    "sidewalk": (200, 172, 150),
    "building": (150, 96, 70),
    "wall": (178, 170, 118),
    "fence": (110, 150, 120),
    "pole": (72, 74, 118),
    "traffic light": (32, 34, 30),
    "traffic sign": (240, 204, 24),
    "vegetation": (58, 140, 48),
    "terrain": (168, 186, 88),
    "sky": (132, 186, 240),
    "person": (232, 122, 70),
    "rider": (212, 60, 204),
    "car": (204, 30, 40),
    "truck": (40, 72, 172),
    "bus": (250, 152, 20),
    "train": (70, 182, 182),
    "motorcycle": (122, 40, 132),
    "bicycle": (20, 112, 172),
}
# Amplitude (0-255 units, at full texture strength) of the blotchy texture per class.
_TEXTURE = {
    "road": 14.0,
    "sidewalk": 16.0,
    "building": 18.0,
    "wall": 16.0,
    "fence": 10.0,
    "vegetation": 42.0,
    "terrain": 32.0,
    "sky": 20.0,
}
# Version 2: the look-alike groups. On hard images every member takes the appearance of the
# group's first class (its colour distribution and texture), shared by the whole image.
LOOKALIKE_GROUPS = (
    ("road", "sidewalk"),
    ("car", "truck", "bus", "train"),
    ("building", "wall", "fence"),
    ("person", "rider", "pole"),
    ("vegetation", "terrain"),
    ("bicycle", "motorcycle"),
    ("traffic sign", "traffic light"),
)
_LOOKALIKE = {name: group[0] for group in LOOKALIKE_GROUPS for name in group}
# Difficulty at which the group look starts and where it is complete.
_LOOKALIKE_FROM, _LOOKALIKE_FULL = 0.2, 0.7
VERSIONS = (1, 2)
# 2**64 / golden ratio, odd: the step of the additive recurrence of version 2's difficulties.
_WEYL_STEP = 0x9E3779B97F4A7C15
_VEHICLE_LIKE = ("car", "truck", "bus", "train", "motorcycle", "bicycle", "person", "rider")
_GLASS = (58, 68, 84)
_TYRE = (22, 22, 24)
_SKIN = (214, 170, 140)
_CLOTH = (40, 44, 70)


@dataclass(frozen=True)
class SynthConfig:
    """What mess-synth generates.

    Args:
        num_classes: 4 to 19; fewer classes drop the rarer ones (:func:`class_names`).
        height: image height in pixels.
        width: image width in pixels.
        seed: base seed of the benchmark; keep 0 to share the published splits.
        min_difficulty: lower end of the per-image difficulty, uniform over the range.
        max_difficulty: upper end of the per-image difficulty. The range is the knob of
            the share of easy images: in version 2, images below difficulty 0.2 have no
            look-alikes, so ``max_difficulty=0.2`` is all easy and ``min_difficulty=0.7``
            all hard.
        version: 1 (the published generator, i.i.d. difficulties) or 2 (look-alike
            classes on hard images, stratified difficulties).
    """

    num_classes: int = 8
    height: int = 64
    width: int = 64
    seed: int = 0
    min_difficulty: float = 0.0
    max_difficulty: float = 1.0
    version: int = 1

    def __post_init__(self) -> None:
        if not MIN_CLASSES <= self.num_classes <= MAX_CLASSES:
            raise ValueError(
                f"num_classes must be {MIN_CLASSES}..{MAX_CLASSES}, got {self.num_classes}"
            )
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
        if not 0.0 <= self.min_difficulty <= self.max_difficulty <= 1.0:
            raise ValueError(
                "need 0 <= min_difficulty <= max_difficulty <= 1, got "
                f"{self.min_difficulty}, {self.max_difficulty}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {self.version}")


def class_names(num_classes: int = 8) -> list[str]:
    """Class names of mess-synth with ``num_classes`` classes, in class-id order.

    The kept classes are the ``num_classes`` most frequent ones; they keep the relative
    order of the Cityscapes train ids, so ``class_names(19)`` is exactly Cityscapes'.

    Args:
        num_classes: 4 to 19.

    Returns:
        The names; index = class id.
    """
    if not MIN_CLASSES <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be {MIN_CLASSES}..{MAX_CLASSES}, got {num_classes}")
    keep = set(_PRIORITY[:num_classes])
    return [name for name in CITYSCAPES_CLASSES if name in keep]


# Options of the data spec, with their parsers, in the order spec_of writes them.
_SPEC_OPTIONS: dict[str, Callable[[str], Any]] = {
    "version": int,
    "seed": int,
    "min_difficulty": float,
    "max_difficulty": float,
}


def config_from_spec(
    arg: str,
    *,
    num_classes: int | None = None,
    size: tuple[int, int] = (64, 64),
    default_classes: int = 8,
) -> SynthConfig:
    """The :class:`SynthConfig` of the argument of a ``synth`` data spec.

    The spec is ``synth``, ``synth:N`` or either followed by ``:KEY=VALUE`` options
    (``version``, ``seed``, ``min_difficulty``, ``max_difficulty``), e.g.
    ``synth:19:version=2:seed=3``; colons keep it free of shell metacharacters.

    Args:
        arg: what follows ``synth:`` (``""`` for plain ``synth``).
        num_classes: the class count asked for elsewhere; must agree with ``N``.
        size: ``(height, width)`` to render at.
        default_classes: the class count when neither ``N`` nor ``num_classes`` gives one.

    Returns:
        The config.

    Raises:
        ValueError: a malformed spec, an unknown option or an invalid setting.
    """
    classes = num_classes
    options: dict[str, Any] = {}
    for k, part in enumerate(arg.split(":") if arg else []):
        key, eq, value = part.partition("=")
        if not eq:
            if k > 0:
                raise ValueError(f"synth:{arg}: {part!r} is not KEY=VALUE")
            try:
                classes = int(part)
            except ValueError:
                raise ValueError(
                    f"synth:{arg}: expected synth:N_CLASSES[:KEY=VALUE...], e.g. synth:19"
                ) from None
            if num_classes is not None and num_classes != classes:
                raise ValueError(
                    f"synth:{arg} has {classes} classes, not num_classes={num_classes}"
                )
            continue
        if key not in _SPEC_OPTIONS:
            raise ValueError(
                f"synth:{arg}: unknown option {key!r}: expected one of {', '.join(_SPEC_OPTIONS)}"
            )
        if key in options:
            raise ValueError(f"synth:{arg}: {key} given twice")
        try:
            options[key] = _SPEC_OPTIONS[key](value)
        except ValueError:
            raise ValueError(f"synth:{arg}: {key}={value!r} is not a number") from None
    height, width = size
    return SynthConfig(
        num_classes=classes or default_classes, height=height, width=width, **options
    )


def spec_of(config: SynthConfig) -> str:
    """The data spec of ``config`` (the image size is not part of it); the inverse of
    :func:`config_from_spec`, writing only the options that differ from the defaults."""
    default = SynthConfig()
    parts = [f"synth:{config.num_classes}"]
    for key in _SPEC_OPTIONS:
        value = getattr(config, key)
        if value != getattr(default, key):
            parts.append(f"{key}={value}")
    return ":".join(parts)


def image_seed(split: str, index: int, seed: int = 0) -> int:
    """The PCG64 seed of image ``index`` of ``split``; distinct for every argument triple.

    Args:
        split: ``train``, ``calibration`` or ``test``.
        index: 0 <= index < 2**32.
        seed: the base seed (:attr:`SynthConfig.seed`).

    Returns:
        A non-negative integer.
    """
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    if not 0 <= index < _INDEX_LIMIT:
        raise ValueError(f"index must be in [0, 2**32), got {index}")
    return seed * 3 * _INDEX_LIMIT + _SPLIT_OFFSET[split] + index


def _rng(config: SynthConfig, split: str, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(image_seed(split, index, config.seed)))


def stratified_unit(split: str, index: int, seed: int = 0) -> float:
    """Version 2's position of image ``index`` in [0, 1): an additive recurrence.

    ``frac(offset + index / golden ratio)``, in exact 64-bit integer arithmetic, with the
    offset drawn from ``(seed, split)``. Every prefix ``0..n-1`` of it covers [0, 1) with
    a discrepancy of order ``log(n) / n`` (against ``1 / sqrt(n)`` for i.i.d. draws), so
    splits of any length share their difficulty histogram; unlike a shuffled stratified
    sequence over a fixed length, an image's difficulty does not depend on how many images
    the split has.

    Args:
        split: ``train``, ``calibration`` or ``test``.
        index: 0 <= index < 2**32.
        seed: the base seed (:attr:`SynthConfig.seed`).

    Returns:
        A float in [0, 1).
    """
    image_seed(split, index, seed)  # validates split and index
    entropy = [seed, SPLITS.index(split), 0x57A7]
    offset = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
    return ((offset + index * _WEYL_STEP) % (1 << 64)) / float(1 << 64)


def _draw_difficulty(
    rng: np.random.Generator, config: SynthConfig, split: str, index: int
) -> float:
    lo, hi = config.min_difficulty, config.max_difficulty
    if config.version == 1:
        return float(lo + (hi - lo) * rng.random())
    return float(lo + (hi - lo) * stratified_unit(split, index, config.seed))


def difficulty_of(config: SynthConfig, split: str, index: int) -> float:
    """The difficulty of one image without rendering it (version 1: the image's first
    draw; version 2: :func:`stratified_unit` mapped onto the difficulty range)."""
    return _draw_difficulty(_rng(config, split, index), config, split, index)


def split_balance(config: SynthConfig, lengths: Mapping[str, int]) -> dict[str, Any]:
    """How alike the difficulties of splits are (:func:`difficulty_balance` of the splits'
    per-image difficulties; nothing is rendered).

    Args:
        config: what to generate.
        lengths: images per split, e.g. ``{"train": 640, "calibration": 400, "test": 200}``.
    """
    return difficulty_balance(
        {split: [difficulty_of(config, split, i) for i in range(n)] for split, n in lengths.items()}
    )


def difficulty_balance(difficulties: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """How alike the difficulties of splits are, from each split's per-image difficulties.

    Returns:
        ``{"splits": {split: {"n", "mean", "std", "se"}}, "gaps_se": {(a, b): float},
        "max_diff_se": float, "pair": (split, split)}``: per split the mean, sample standard
        deviation and standard error of the mean; for every pair of splits the difference of
        their means in units of the standard error of that difference,
        ``sqrt(se_a**2 + se_b**2)``; the largest of those, and the pair that has it.
    """
    splits: dict[str, dict[str, float]] = {}
    for split, values in difficulties.items():
        d, n = np.asarray(values, dtype=np.float64), len(values)
        std = float(d.std(ddof=1)) if n > 1 else 0.0
        splits[split] = {"n": n, "mean": float(d.mean()), "std": std, "se": std / math.sqrt(n)}
    gaps: dict[tuple[str, str], float] = {}
    names = list(splits)
    for a_i, a in enumerate(names):
        for b in names[a_i + 1 :]:
            se = math.hypot(splits[a]["se"], splits[b]["se"])
            gap = abs(splits[a]["mean"] - splits[b]["mean"])
            gaps[(a, b)] = gap / se if se > 0 else (0.0 if gap == 0 else math.inf)
    pair = max(gaps, key=gaps.__getitem__) if gaps else ("", "")
    return {"splits": splits, "gaps_se": gaps, "max_diff_se": gaps.get(pair, 0.0), "pair": pair}


def generate(
    config: SynthConfig, split: str, index: int, *, difficulty: float | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Render image ``index`` of ``split``.

    Args:
        config: what to generate.
        split: ``train``, ``calibration`` or ``test``.
        index: image number in the split (0 <= index < 2**32).
        difficulty: force this difficulty instead of the image's own draw (the rest of the
            image's randomness is unchanged); for studies and tests.

    Returns:
        ``(image, mask, difficulty)``: RGB ``uint8 [H, W, 3]``, class ids ``uint8 [H, W]``
        with 255 = ignore (a thin band on some object borders), and the difficulty in [0, 1].

    Example:
        >>> image, mask, d = generate(SynthConfig(num_classes=8), "train", 0)
        >>> image.shape, mask.shape
        ((64, 64, 3), (64, 64))
    """
    rng = _rng(config, split, index)
    drawn = _draw_difficulty(rng, config, split, index)
    d = drawn if difficulty is None else float(np.clip(difficulty, 0.0, 1.0))
    names = class_names(config.num_classes)
    scene = _Scene(config.height, config.width, names, rng, d, config.version)
    scene.compose()
    image, mask = scene.render()
    return image, mask, d


class SynthSource:
    """A split of mess-synth as an indexable source of ``(image, mask)`` numpy pairs.

    Args:
        config: what to generate.
        split: ``train``, ``calibration`` or ``test``.
        length: number of images (indices ``0..length-1``).
    """

    ignore_index = IGNORE_INDEX

    def __init__(self, config: SynthConfig, split: str, length: int) -> None:
        image_seed(split, 0)  # validates the split name
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.config = config
        self.split = split
        self.length = length
        self.class_names = tuple(class_names(config.num_classes))
        self.name = f"{spec_of(config)} ({split})"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``(image uint8 [H,W,3], mask uint8 [H,W])`` of sample ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        image, mask, _ = generate(self.config, self.split, index)
        return image, mask

    def difficulty(self, index: int) -> float:
        """The difficulty of sample ``index`` (cheap: nothing is rendered)."""
        return difficulty_of(self.config, self.split, index)


def write_folder(
    config: SynthConfig,
    split: str,
    count: int,
    out_dir: str | Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write images ``0..count-1`` of ``split`` in the plain folder format, as a cache.

    Layout: ``out_dir/images/<stem>.png`` (RGB), ``out_dir/masks/<stem>.png`` (class ids,
    255 = ignore) and ``out_dir/meta.json`` (class names, the generator's settings and the
    difficulty of every stem). Stems are ``<split>_<index:06d>``. When ``meta.json`` already
    describes the same images and every file is there, nothing is written again.

    Args:
        config: what to generate.
        split: ``train``, ``calibration`` or ``test``.
        count: number of images.
        out_dir: folder to write (created).
        progress: called with 1 after each image written (for progress bars).

    Returns:
        ``out_dir`` as a Path.
    """
    from mess.data.folders import write_png

    image_seed(split, 0)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    out = Path(out_dir)
    stems = [f"{split}_{i:06d}" for i in range(count)]
    generator = {
        "name": "mess-synth",
        "version": config.version,
        "config": asdict(config),
        "split": split,
        "count": count,
    }
    meta_path = out / "meta.json"
    if _is_cached(meta_path, generator, stems):
        log.info("mess-synth: %s already holds %d %s images", out, count, split)
        if progress is not None:
            progress(count)
        return out
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    difficulties: dict[str, float] = {}
    for index, stem in enumerate(stems):
        image, mask, d = generate(config, split, index)
        write_png(out / "images" / f"{stem}.png", image)
        write_png(out / "masks" / f"{stem}.png", mask)
        difficulties[stem] = round(d, 6)
        if progress is not None:
            progress(1)
    names = class_names(config.num_classes)
    meta = {
        "class_names": names,
        "num_classes": len(names),
        "ignore_index": IGNORE_INDEX,
        "generator": generator,
        "difficulty": difficulties,
    }
    # meta.json last and atomically: an interrupted run never looks like a complete cache.
    write_text_atomic(meta_path, json.dumps(meta, indent=1))
    return out


def _is_cached(meta_path: Path, generator: dict[str, Any], stems: list[str]) -> bool:
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    if meta.get("generator") != generator:
        return False
    root = meta_path.parent
    return all(
        (root / "images" / f"{s}.png").is_file() and (root / "masks" / f"{s}.png").is_file()
        for s in stems
    )


# ----------------------------------------------------------------------------- rendering


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _span(a: float, b: float, n: int) -> tuple[int, int]:
    """Pixel index range whose centres lie in [a, b), at least one pixel if b - a >= 0.6."""
    lo = math.floor(a + 0.5)
    hi = math.floor(b + 0.5)
    if hi <= lo and b - a >= 0.6:
        hi = lo + 1
    return max(lo, 0), min(hi, n)


@lru_cache(maxsize=64)
def _upsample_matrix(n: int, cells: int) -> np.ndarray:
    """``[n, cells + 1]`` linear interpolation from a coarse grid to ``n`` pixels."""
    pos = (np.arange(n) + 0.5) / n * cells
    left = np.minimum(np.floor(pos).astype(int), cells - 1)
    frac = (pos - left).astype(np.float32)
    m = np.zeros((n, cells + 1), np.float32)
    m[np.arange(n), left] = 1.0 - frac
    m[np.arange(n), left + 1] = frac
    return m


@lru_cache(maxsize=256)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """``[n, n]`` Gaussian blur along one axis, edge pixels repeated (rows sum to 1)."""
    radius = max(1, math.ceil(2.0 * sigma))
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    m = np.zeros((n, n), np.float64)
    rows = np.arange(n)
    for k, tap in zip(offsets, taps, strict=True):
        np.add.at(m, (rows, np.clip(rows + k, 0, n - 1)), tap)
    return m.astype(np.float32)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[C, H, W]`` with edge padding.

    Small images use two matrix products (fast in BLAS); big ones shifted sums, whose
    cost grows with the kernel instead of the image side.
    """
    sigma = round(sigma, 2)  # a bounded set of cached matrices
    _, h, w = img.shape
    if max(h, w) <= 256:
        return _blur_matrix(h, sigma) @ img @ _blur_matrix(w, sigma).T
    radius = max(1, math.ceil(2.0 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    pad = np.pad(img, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    out = taps[0] * pad[:, 0:h]
    for k in range(1, 2 * radius + 1):
        out += taps[k] * pad[:, k : k + h]
    pad = np.pad(out, ((0, 0), (0, 0), (radius, radius)), mode="edge")
    out = taps[0] * pad[:, :, 0:w]
    for k in range(1, 2 * radius + 1):
        out += taps[k] * pad[:, :, k : k + w]
    return out


class _Scene:
    """One image under construction: an instance map plus a table of instances.

    Each instance has a class, a colour, a group (the object it belongs to: a car's wheels
    and windows are instances of the car's group) and a flag asking for an ignore band
    along the group's border.
    """

    def __init__(
        self,
        height: int,
        width: int,
        names: list[str],
        rng: np.random.Generator,
        d: float,
        version: int = 1,
    ) -> None:
        self.h, self.w = height, width
        self.names = names
        self.ids = {name: i for i, name in enumerate(names)}
        self.rng = rng
        self.d = d
        self.version = version
        # Version 2: how far look-alike classes take their group's appearance (0 to 1),
        # and the group colours of this image, drawn when first needed.
        alike = (d - _LOOKALIKE_FROM) / (_LOOKALIKE_FULL - _LOOKALIKE_FROM)
        self.alike = min(1.0, max(0.0, alike)) if version >= 2 else 0.0
        self.group_colour: dict[str, _RGB] = {}
        self.inst = np.zeros((height, width), np.int16)
        self.cls: list[int] = []
        self.colour: list[_RGB] = []
        self.group: list[int] = []
        self.flag: list[bool] = []
        self.texture: list[float] = []
        self.windows: list[float] = []
        self.rows = np.arange(height, dtype=np.float32) + 0.5
        self.cols = np.arange(width, dtype=np.float32) + 0.5

    # --- instances and colours

    def has(self, name: str) -> bool:
        return name in self.ids

    def add(
        self,
        name: str,
        colour: _RGB,
        *,
        group: int = -1,
        flag: bool = False,
        windows: float = 0.0,
    ) -> int:
        i = len(self.cls)
        self.cls.append(self.ids[name])
        self.colour.append(colour)
        self.group.append(i if group < 0 else group)
        self.flag.append(flag)
        texture = _TEXTURE.get(name, 5.0)
        if self.alike > 0.0:
            texture = _lerp(texture, _TEXTURE.get(_LOOKALIKE.get(name, name), 5.0), self.alike)
        self.texture.append(texture)
        self.windows.append(windows)
        return i

    def colour_of(self, name: str) -> _RGB:
        """An instance colour: the class colour, more and more jittered and borrowed.

        Version 2 moves it, by :attr:`alike`, to its look-alike group's colour of this
        image (the group's first class drawn once per image) plus a small jitter, the same
        for every member of the group.
        """
        own = self._own_colour(name)
        if self.alike == 0.0 or name not in _LOOKALIKE:
            return own
        leader = _LOOKALIKE[name]
        if leader not in self.group_colour:
            self.group_colour[leader] = self._own_colour(leader)
        z = self.rng.standard_normal(3).tolist()
        shared = tuple(c + 6.0 * dz for c, dz in zip(self.group_colour[leader], z, strict=True))
        t = self.alike
        return (
            _lerp(own[0], shared[0], t),
            _lerp(own[1], shared[1], t),
            _lerp(own[2], shared[2], t),
        )

    def _own_colour(self, name: str) -> _RGB:
        d = self.d
        # Plain floats and batched draws: this runs for every instance.
        u_share, u_grey, u_mix = self.rng.random(3).tolist()
        z = self.rng.standard_normal(4).tolist()
        r, g, b = _BASE[name]
        share = 0.75 if name in _VEHICLE_LIKE else 0.45
        if u_share < share * d:
            # Borrow the hue of another class (or a grey): colour stops naming the class.
            if u_grey < 0.7:
                other = _BASE[self.names[int(u_grey / 0.7 * len(self.names))]]
            else:
                grey = 40.0 + 180.0 * (u_grey - 0.7) / 0.3
                other = (grey, grey, grey)
            t = 0.4 + 0.6 * u_mix
            r, g, b = r + (other[0] - r) * t, g + (other[1] - g) * t, b + (other[2] - b) * t
        gain = 1.0 + (0.03 + 0.22 * d) * z[0]
        jitter = 3.0 + 40.0 * d
        return (r * gain + jitter * z[1], g * gain + jitter * z[2], b * gain + jitter * z[3])

    def towards(self, colour: _RGB, target: _RGB, k: float) -> _RGB:
        """A part colour: ``colour`` moved towards ``target`` more as difficulty grows
        (version 2: less again as look-alikes take over, a part colour being a local cue)."""
        t = min(1.0, k * self.d) * (1.0 - self.alike)
        return (
            colour[0] + (target[0] - colour[0]) * t,
            colour[1] + (target[1] - colour[1]) * t,
            colour[2] + (target[2] - colour[2]) * t,
        )

    def flagged(self, thickness_px: float) -> bool:
        """Whether a new object gets an ignore band: half of those thick enough (in pixels)
        that the band leaves most of the object labelled."""
        return thickness_px >= 6.0 and self.rng.random() < 0.5

    # --- primitives (float pixel coordinates; pixel (r, c) has its centre at r+.5, c+.5)

    def rect(self, i: int, y0: float, y1: float, x0: float, x1: float) -> None:
        r0, r1 = _span(y0, y1, self.h)
        c0, c1 = _span(x0, x1, self.w)
        if r0 < r1 and c0 < c1:
            self.inst[r0:r1, c0:c1] = i

    def ellipse(
        self, i: int, cy: float, cx: float, ry: float, rx: float, hole: float = 0.0
    ) -> None:
        ry, rx = max(ry, 0.5), max(rx, 0.5)
        r0, r1 = _span(cy - ry, cy + ry, self.h)
        c0, c1 = _span(cx - rx, cx + rx, self.w)
        if r0 >= r1 or c0 >= c1:
            return
        yy = ((self.rows[r0:r1] - cy) / ry) ** 2
        xx = ((self.cols[c0:c1] - cx) / rx) ** 2
        rr = yy[:, None] + xx[None, :]
        m = rr <= 1.0
        if hole > 0.0:
            m &= rr >= hole * hole
        self.inst[r0:r1, c0:c1][m] = i

    def trapezoid(
        self, i: int, y0: float, y1: float, cx: float, top_half: float, bottom_half: float
    ) -> None:
        r0, r1 = _span(y0, y1, self.h)
        half_max = max(top_half, bottom_half)
        c0, c1 = _span(cx - half_max, cx + half_max, self.w)
        if r0 >= r1 or c0 >= c1:
            return
        t = (self.rows[r0:r1] - y0) / max(y1 - y0, 1e-3)
        half = top_half + (bottom_half - top_half) * t
        m = np.abs(self.cols[c0:c1][None, :] - cx) <= np.maximum(half, 0.5)[:, None]
        self.inst[r0:r1, c0:c1][m] = i

    # --- the scene

    def compose(self) -> None:
        """Lay out background and objects (fills the instance map and table)."""
        rng, h = self.rng, self.h
        self.add("sky", self.colour_of("sky"))  # instance 0: everything starts as sky
        self.horizon = h * float(rng.uniform(0.33, 0.55))
        self.vanish = self.w * float(rng.uniform(0.3, 0.7))
        # Camera height in metres: ground pixels per metre = (y - horizon) / camera.
        self.camera = float(rng.uniform(1.7, 2.4))
        self.road_m = float(rng.uniform(2.5, 4.5))  # half width of the road
        self.side_m = float(rng.uniform(1.5, 3.0)) if self.has("sidewalk") else 0.0
        self._background()
        self._objects()

    def ppm(self, y: float) -> float:
        """Pixels per metre on the ground at image row ``y``."""
        return max(y - self.horizon, 0.0) / self.camera

    def _background(self) -> None:
        rng, d, h, w = self.rng, self.d, self.h, self.w
        rows, cols = self.rows[:, None], self.cols
        dx = np.abs(cols - self.vanish)
        ground_side = self.horizon + dx * self.camera / (self.road_m + self.side_m)
        ground_road = self.horizon + dx * self.camera / self.road_m
        # A verge of terrain beyond some sidewalks: the facades start further out.
        verge_m = np.zeros(2)
        if self.has("terrain"):
            verge_m = np.where(rng.random(2) < 0.5, rng.uniform(0.5, 3.0, 2), 0.0)
        left_side = cols < self.vanish
        verge = np.where(left_side, verge_m[0], verge_m[1])
        base = self.horizon + dx * self.camera / (self.road_m + self.side_m + verge)

        # Skyline: segments of buildings (or tree lines, or gaps), narrower when harder.
        seg_w = w * _lerp(0.45, 0.07, d) * float(rng.uniform(0.7, 1.3))
        n = math.ceil(w / (0.6 * seg_w)) + 1
        bounds = np.cumsum(seg_w * rng.uniform(0.6, 1.4, n)) - seg_w * float(rng.random())
        seg = np.searchsorted(bounds, cols, side="right")
        tops = self.horizon - h * rng.uniform(0.12, 0.5, n + 1) * _lerp(1.0, 0.85, d)
        lean = float(rng.uniform(0.1, 0.8))
        skyline = tops[seg] - dx * lean
        seg_inst = np.zeros(n + 1, np.int16)
        tree_line = np.zeros(n + 1, bool)
        for k in range(n + 1):
            u = rng.random()
            if u < 0.12 and d > 0.2:
                continue  # a gap: sky down to the horizon
            if u < 0.3 and self.has("vegetation"):
                tree_line[k] = True
                seg_inst[k] = self.add("vegetation", self.colour_of("vegetation"))
            else:
                win = _lerp(4.0, 70.0, d) * float(rng.uniform(0.3, 1.0))
                seg_inst[k] = self.add("building", self.colour_of("building"), windows=win)
        if tree_line.any():
            # Tree lines get a bumpy top.
            cell = max(1, w // 24)
            bumps = np.repeat(rng.normal(0.0, 0.04 * h, w // cell + 1), cell)[:w]
            skyline = np.where(tree_line[seg], skyline + bumps, skyline)
        facade = rows < base[None, :]
        inst = np.where(facade & (rows >= skyline[None, :]), seg_inst[seg][None, :], self.inst)

        # Strips along the facade base: hedges, walls, fences.
        strips = [s for s in ("vegetation", "wall", "fence") if self.has(s)]
        if strips:
            kinds = rng.integers(len(strips), size=n + 1)
            use = rng.random(n + 1) < _lerp(0.3, 0.7, d)
            height = rng.uniform(0.15, 0.45, n + 1)
            strip_inst = np.full(n + 1, -1, np.int16)
            for k in np.flatnonzero(use).tolist():
                name = strips[int(kinds[k])]
                win = 0.0
                if name == "wall" and self.alike > 0.0:
                    # Version 2: walls take the facades' windows too, as buildings' look-alike.
                    win = self.alike * _lerp(4.0, 70.0, d) * float(rng.uniform(0.3, 1.0))
                strip_inst[k] = self.add(name, self.colour_of(name), windows=win)
            band_top = base - (base - self.horizon) * height[seg]
            band = facade & (rows >= band_top[None, :]) & (strip_inst[seg] >= 0)[None, :]
            if self.has("fence"):
                # Fences are bars and a rail: what is behind shows through.
                period = max(3.0, w * 0.03)
                bars = (cols % period) < max(1.0, period * 0.35)
                rail = rows < band_top[None, :] + np.maximum(1.0, 0.15 * (base - band_top))
                is_fence = np.array([s == "fence" for s in strips])[kinds][seg] & (
                    strip_inst[seg] >= 0
                )
                band &= ~is_fence[None, :] | bars[None, :] | rail
            inst = np.where(band, strip_inst[seg][None, :], inst)

        # Ground: verges, sidewalks either side, the road in the middle, lane markings.
        if verge_m.any():
            terrain = [self.add("terrain", self.colour_of("terrain")) if v else 0 for v in verge_m]
            side = np.where(left_side, terrain[0], terrain[1]).astype(np.int16)
            inst = np.where(~facade, side[None, :], inst)
        if self.has("sidewalk"):
            left = self.add("sidewalk", self.colour_of("sidewalk"))
            right = self.add("sidewalk", self.colour_of("sidewalk"))
            side = np.where(left_side, left, right).astype(np.int16)
            inst = np.where(rows >= ground_side[None, :], side[None, :], inst)
        self.road = self.add("road", self.colour_of("road"))
        road = rows >= ground_road[None, :]
        inst = np.where(road, np.int16(self.road), inst)
        if rng.random() < 0.6:
            paint = self.add(
                "road", self.towards(self.colour_of("road"), (230, 230, 220), 3.0), group=self.road
            )
            slope = float(rng.uniform(-0.3, 0.3)) * self.road_m / self.camera
            depth = np.maximum(rows - self.horizon, 1e-3)
            centre = self.vanish + depth * slope
            dash = ((self.camera * h / depth * float(rng.uniform(0.15, 0.3))) % 1.0) < 0.5
            line = np.abs(cols[None, :] - centre) < np.maximum(0.5, depth * 0.06 / self.camera)
            inst = np.where(road & line & dash, np.int16(paint), inst)
        self.inst = inst.astype(np.int16)

    def _objects(self) -> None:
        """Place objects on the ground plane and draw them far to near."""
        rng, d, h = self.rng, self.d, self.h
        depth = h - self.horizon
        near = _lerp(0.45, 0.08, d)  # harder: objects can be further away (smaller)
        todo: list[tuple[float, Callable[..., None], tuple[float, ...]]] = []

        def count(easy: float, hard: float) -> int:
            return int(rng.poisson(_lerp(easy, hard, d)))

        def place(lo_m: float, hi_m: float, half_m: float) -> tuple[float, float]:
            """A ground point ``lo_m..hi_m`` metres left or right of the road's centre line,
            at a depth where an object ``half_m`` metres wide is at least half in view."""
            side = 1.0 if rng.random() < 0.5 else -1.0
            lateral = float(rng.uniform(lo_m, hi_m))
            room = (self.w - self.vanish) if side > 0 else self.vanish
            y_lo, y_hi = self.horizon + depth * near, self.horizon + depth * 1.08
            if lateral > half_m:
                y_hi = min(y_hi, self.horizon + self.camera * room / (lateral - half_m))
            y = float(rng.uniform(min(y_lo, y_hi), y_hi))
            return y, self.vanish + side * lateral * self.ppm(y)

        n_cars = max(count(1.2, 7.0), 1 if d < 0.3 else 0)
        for _ in range(n_cars):
            y, x = place(0.0, self.road_m - 1.0, 0.9)
            todo.append((y, self.car, (y, x)))
        for name, easy, hard in (("truck", 0.03, 0.25), ("bus", 0.02, 0.12)):
            if self.has(name):
                for _ in range(count(easy, hard)):
                    y, x = place(0.0, self.road_m - 1.3, 1.25)
                    todo.append((y, partial(self.box_vehicle, name=name), (y, x)))
        if self.has("person"):
            for _ in range(count(1.0, 8.0)):
                edge = self.road_m + 0.3
                y, x = place(edge, edge + max(self.side_m - 0.6, 0.2), 0.25)
                todo.append((y, self.person, (y, x)))
        for name, easy, hard in (("bicycle", 0.1, 1.2), ("motorcycle", 0.05, 0.6)):
            if self.has(name):
                for _ in range(count(easy, hard)):
                    y, x = place(max(self.road_m - 1.5, 0.0), self.road_m - 0.4, 0.8)
                    todo.append((y, self.two_wheeler, (y, x, float(name == "motorcycle"))))
        if self.has("pole"):
            for _ in range(count(0.5, 4.0)):
                y, x = place(self.road_m + 0.2, self.road_m + 0.7, 0.1)
                todo.append((y, self.pole, (y, x)))
        if self.has("vegetation"):
            for _ in range(count(0.3, 3.0)):
                edge = self.road_m + self.side_m
                y, x = place(edge - 1.0, edge + 0.5, 1.5)
                todo.append((y, self.tree, (y, x)))
        if self.has("train") and rng.random() < _lerp(0.03, 0.12, d):
            y = self.horizon + depth * float(rng.uniform(0.04, 0.12))
            todo.append((y, self.train, (y, self.w * float(rng.uniform(-0.5, 0.6)))))
        todo.sort(key=lambda item: item[0])
        for _, draw, args in todo:
            draw(*args)

    # --- objects; (y, x) is the ground contact point, sizes in metres via ppm

    def car(self, y: float, x: float) -> None:
        rng, p = self.rng, self.ppm(y)
        w = 1.8 * p * float(rng.uniform(0.9, 1.1))
        body_h, cabin_h, clear = 0.75 * p, 0.6 * p, 0.22 * p
        body = self.add("car", self.colour_of("car"), flag=self.flagged(w))
        colour = self.colour[body]
        tyre = self.add("car", self.towards(colour, _TYRE, 2.0), group=body)
        glass = self.add("car", self.towards(colour, _GLASS, 2.0), group=body)
        lamp = self.add("car", self.towards(colour, (240, 30, 30), 1.5), group=body)
        self.rect(tyre, y - 0.4 * p, y, x - 0.45 * w, x - 0.25 * w)
        self.rect(tyre, y - 0.4 * p, y, x + 0.25 * w, x + 0.45 * w)
        top = y - clear - body_h
        self.rect(body, top, y - clear, x - w / 2, x + w / 2)
        self.trapezoid(body, top - cabin_h, top + 0.5, x, 0.33 * w, 0.47 * w)
        self.trapezoid(glass, top - 0.85 * cabin_h, top - 0.1 * cabin_h, x, 0.27 * w, 0.38 * w)
        self.rect(lamp, top + 0.15 * body_h, top + 0.4 * body_h, x - 0.47 * w, x - 0.33 * w)
        self.rect(lamp, top + 0.15 * body_h, top + 0.4 * body_h, x + 0.33 * w, x + 0.47 * w)

    def box_vehicle(self, y: float, x: float, *, name: str) -> None:
        """A truck or bus seen from behind."""
        rng, p = self.rng, self.ppm(y)
        w = 2.5 * p * float(rng.uniform(0.95, 1.05))
        tall = (3.4 if name == "truck" else 3.1) * p
        body = self.add(name, self.colour_of(name), flag=self.flagged(w))
        colour = self.colour[body]
        tyre = self.add(name, self.towards(colour, _TYRE, 2.0), group=body)
        detail = self.add(name, self.towards(colour, _GLASS, 1.5), group=body)
        self.rect(tyre, y - 0.5 * p, y, x - 0.45 * w, x - 0.2 * w)
        self.rect(tyre, y - 0.5 * p, y, x + 0.2 * w, x + 0.45 * w)
        self.rect(body, y - tall, y - 0.3 * p, x - w / 2, x + w / 2)
        if name == "bus":
            self.rect(detail, y - 0.92 * tall, y - 0.55 * tall, x - 0.44 * w, x + 0.44 * w)
        else:
            self.rect(detail, y - 0.35 * tall, y - 0.28 * tall, x - 0.5 * w, x + 0.5 * w)

    def _figure(self, i: int, y: float, x: float, tall: float, legs: bool = True) -> None:
        """A standing (or sitting) person shape of instance ``i`` and its parts."""
        colour = self.colour[i]
        skin = self.add(self.names[self.cls[i]], self.towards(colour, _SKIN, 2.0), group=i)
        w = 0.26 * tall
        if legs:
            cloth = self.add(self.names[self.cls[i]], self.towards(colour, _CLOTH, 2.0), group=i)
            self.rect(cloth, y - 0.48 * tall, y, x - 0.45 * w, x - 0.05 * w)
            self.rect(cloth, y - 0.48 * tall, y, x + 0.05 * w, x + 0.45 * w)
        self.rect(i, y - 0.84 * tall, y - 0.46 * tall, x - w / 2, x + w / 2)
        self.ellipse(skin, y - 0.91 * tall, x, 0.08 * tall, 0.065 * tall)

    def person(self, y: float, x: float) -> None:
        tall = 1.75 * self.ppm(y) * float(self.rng.uniform(0.85, 1.1))
        i = self.add("person", self.colour_of("person"), flag=self.flagged(0.26 * tall))
        self._figure(i, y, x, tall)

    def two_wheeler(self, y: float, x: float, motor: float) -> None:
        rng, p = self.rng, self.ppm(y)
        name = "motorcycle" if motor else "bicycle"
        r = (0.32 if motor else 0.34) * p
        half = (0.75 if motor else 0.55) * p
        frame = self.add(name, self.colour_of(name), flag=self.flagged(4.0 * r))
        tyre = self.add(name, self.towards(self.colour[frame], _TYRE, 2.0), group=frame)
        if self.has("rider") and rng.random() < 0.6:
            tall = 1.75 * p * float(rng.uniform(0.85, 1.05))
            rider = self.add("rider", self.colour_of("rider"), flag=self.flagged(0.26 * tall))
            self._figure(rider, y - 0.55 * p, x, tall * 0.85, legs=False)
        hole = 0.0 if motor else 0.72
        self.ellipse(tyre, y - r, x - half, r, r, hole)
        self.ellipse(tyre, y - r, x + half, r, r, hole)
        if motor:
            self.ellipse(frame, y - 0.75 * p, x, 0.3 * p, 0.65 * p)
        else:
            bar = max(0.7, 0.07 * p)
            self.rect(frame, y - r - bar, y - r + bar, x - half, x + half)
            self.rect(frame, y - 2.4 * r, y - r, x - bar, x + bar)

    def pole(self, y: float, x: float) -> None:
        rng, p = self.rng, self.ppm(y)
        tall = 5.0 * p * float(rng.uniform(0.8, 1.3))
        half = max(0.4, 0.09 * p)
        i = self.add("pole", self.colour_of("pole"))
        self.rect(i, y - tall, y, x - half, x + half)
        top = y - tall
        u = rng.random()
        if u < 0.45 and self.has("traffic sign"):
            sign = self.add("traffic sign", self.colour_of("traffic sign"))
            r = 0.38 * p
            if rng.random() < 0.5:
                self.ellipse(sign, top + r, x, r, r)
            else:
                self.rect(sign, top, top + 2 * r, x - r, x + r)
        elif u < 0.75 and self.has("traffic light"):
            light = self.add("traffic light", self.colour_of("traffic light"))
            lamp = self.add(
                "traffic light", self.towards(self.colour[light], (60, 230, 80), 3.0), group=light
            )
            self.rect(light, top, top + 1.0 * p, x - 0.2 * p, x + 0.2 * p)
            self.ellipse(lamp, top + 0.75 * p, x, 0.1 * p, 0.1 * p)

    def tree(self, y: float, x: float) -> None:
        rng, p = self.rng, self.ppm(y)
        trunk_colour = self.towards(self.colour_of("vegetation"), (90, 64, 40), 2.5)
        crown = self.add("vegetation", self.colour_of("vegetation"))
        trunk = self.add("vegetation", trunk_colour, group=crown)
        tall = 3.0 * p * float(rng.uniform(0.8, 1.3))
        self.rect(trunk, y - tall, y, x - 0.15 * p, x + 0.15 * p)
        for _ in range(int(rng.integers(1, 4))):
            r = p * float(rng.uniform(1.2, 2.2))
            cy = y - tall - r * float(rng.uniform(0.3, 0.9))
            cx = x + p * float(rng.uniform(-1.0, 1.0))
            self.ellipse(crown, cy, cx, r * float(rng.uniform(0.8, 1.1)), r)

    def train(self, y: float, x0: float) -> None:
        p = self.ppm(y)
        length = 25.0 * p * float(self.rng.uniform(0.8, 1.5))
        body = self.add("train", self.colour_of("train"), flag=self.flagged(3.5 * p))
        glass = self.add("train", self.towards(self.colour[body], _GLASS, 2.0), group=body)
        self.rect(body, y - 3.8 * p, y - 0.3 * p, x0, x0 + length)
        self.rect(glass, y - 3.0 * p, y - 2.2 * p, x0 + 0.5 * p, x0 + length - 0.5 * p)

    # --- pixels

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """Turn the instance map into an RGB image and a label mask."""
        rng, d, h, w = self.rng, self.d, self.h, self.w
        inst = self.inst
        cls = np.asarray(self.cls, np.uint8)
        # Channels first while rendering: per-channel reductions and gathers are fast.
        img = np.take(np.asarray(self.colour, np.float32).T, inst, axis=1)

        # Texture: one smooth noise field, scaled per instance; windows on buildings.
        strength = _lerp(0.1, 1.3, d)
        cells_y = max(1, round(h / max(2.0, min(h, w) / 12)))
        cells_x = max(1, round(w / max(2.0, min(h, w) / 12)))
        coarse = rng.standard_normal((cells_y + 1, cells_x + 1), dtype=np.float32)
        field = _upsample_matrix(h, cells_y) @ coarse @ _upsample_matrix(w, cells_x).T
        amplitude = np.asarray(self.texture, np.float32) * rng.uniform(0.5, 1.5, len(self.cls))
        shade = amplitude.astype(np.float32)[inst] * np.float32(strength) * field
        windows = np.asarray(self.windows, np.float32)
        if windows.any():
            py = max(3.0, h * float(rng.uniform(0.04, 0.08)))
            px = max(3.0, w * float(rng.uniform(0.03, 0.07)))
            grid = ((self.rows % py) < 0.55 * py)[:, None] & ((self.cols % px) < 0.5 * px)
            shade -= windows[inst] * grid
        img += shade

        # Illumination: a linear gradient and, on harder images, a cast shadow.
        yn = (self.rows / h - 0.5)[:, None]
        xn = self.cols / w - 0.5
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        amp = _lerp(0.0, 0.7, d) * float(rng.uniform(0.5, 1.0))
        gain = 1.0 + amp * (math.cos(angle) * xn + math.sin(angle) * yn)
        if rng.random() < d:
            a, b = rng.uniform(-1.0, 1.0, 2)
            shadow = (yn > 0.0) & (a * xn + b * yn > float(rng.uniform(-0.2, 0.2)))
            gain = np.where(shadow, gain * np.float32(1.0 - _lerp(0.1, 0.45, d)), gain)
        cast = rng.normal(1.0, 0.12 * d, 3).astype(np.float32)
        img *= gain.astype(np.float32)
        img *= cast[:, None, None]

        # Contrast towards the image mean, blur, sensor noise (in place: this is per pixel).
        contrast = _lerp(1.0, 0.35, d) * float(rng.uniform(0.85, 1.0))
        mean = img.reshape(3, -1).mean(axis=1)
        img *= np.float32(contrast)
        img += ((1.0 - contrast) * mean + 0.5).astype(np.float32)[:, None, None]  # +.5: rounding
        sigma = _lerp(0.0, 1.6, d) * float(rng.uniform(0.5, 1.0)) * min(h, w) / 128.0
        if sigma > 0.3:
            img = _blur(img, sigma)
        # Uniform noise of the wanted standard deviation: 4x cheaper than Gaussian draws.
        noise = _lerp(1.0, 22.0, d) * float(rng.uniform(0.6, 1.0)) * math.sqrt(12.0)
        jitter = rng.random((3, h, w), dtype=np.float32)
        jitter -= np.float32(0.5)
        jitter *= np.float32(noise)
        img += jitter
        np.clip(img, 0.0, 255.0, out=img)
        image = np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 0))

        mask = cls[inst]
        mask[self._ignore_band()] = IGNORE_INDEX
        return image, mask

    def _ignore_band(self) -> np.ndarray:
        """Pixels of flagged objects that touch another object (4-neighbourhood)."""
        flag = np.asarray(self.flag, bool)
        band = np.zeros(self.inst.shape, bool)
        if not flag.any():
            return band
        group = np.asarray(self.group, np.int16)[self.inst]
        inside = flag[group]
        dy = group[1:, :] != group[:-1, :]
        dx = group[:, 1:] != group[:, :-1]
        band[1:, :] |= dy & inside[1:, :]
        band[:-1, :] |= dy & inside[:-1, :]
        band[:, 1:] |= dx & inside[:, 1:]
        band[:, :-1] |= dx & inside[:, :-1]
        return band
