"""Joint image/mask transforms for segmentation (torch tensors).

Every transform takes and returns ``(image, mask)``: image ``float32 [3, H, W]`` in [0, 1],
mask ``int64 [H, W]`` with 255 = ignore; random ones draw from the ``torch.Generator``
passed in (or torch's global one when it is None), so a pipeline is deterministic given
a generator. Images resample bilinearly (antialiased when shrinking), masks by nearest
neighbour; regions padded into a crop are 0 in the image and ignore in the mask.

Normalisation is not part of the data sets (the supernet normalises its input);
:class:`NormalizeImage` and the ImageNet statistics are here for users who want them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from mess.data.folders import IGNORE_INDEX

# Statistics of the torchvision ImageNet weights (the same as mess.nn.normalize).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Pair = tuple[torch.Tensor, torch.Tensor]


class PairTransform(Protocol):
    """What a joint transform is: ``(image, mask, generator) -> (image, mask)``."""

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> Pair: ...


def resize_pair(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> Pair:
    """Resize ``image`` bilinearly (antialiased) and ``mask`` by nearest neighbour.

    Args:
        image: ``float32 [3, H, W]``.
        mask: ``int64 [H, W]``.
        size: ``(height, width)`` wanted.

    Returns:
        The resized pair.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image, mask
    out = F.interpolate(
        image[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )[0]
    # nearest-exact samples pixel centres, consistent with align_corners=False above.
    labels = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0]
    return out.clamp_(0.0, 1.0), labels.long()


def crop_pair(
    image: torch.Tensor,
    mask: torch.Tensor,
    top: int,
    left: int,
    size: tuple[int, int],
    fill: float = 0.0,
) -> Pair:
    """Crop the window ``[top, top+h) x [left, left+w)``; outside the input is padding.

    Negative offsets or windows larger than the input pad the image with ``fill`` and the
    mask with 255.
    """
    h, w = size
    height, width = mask.shape
    out_img = image.new_full((image.shape[0], h, w), fill)
    out_mask = mask.new_full((h, w), IGNORE_INDEX)
    y0, y1 = max(top, 0), min(top + h, height)
    x0, x1 = max(left, 0), min(left + w, width)
    if y0 < y1 and x0 < x1:
        out_img[:, y0 - top : y1 - top, x0 - left : x1 - left] = image[:, y0:y1, x0:x1]
        out_mask[y0 - top : y1 - top, x0 - left : x1 - left] = mask[y0:y1, x0:x1]
    return out_img, out_mask


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _randint(lo: int, hi: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [lo, hi] (both ends included)."""
    return int(torch.randint(lo, hi + 1, (), generator=generator))


class RandomScaleCrop:
    """Random rescale, then a random crop to a fixed size, padding with ignore if needed.

    Args:
        size: ``(height, width)`` of the output; None keeps each input's own size.
        scale: range of the scale factor, drawn uniformly.
        fill: image value of padded pixels (their mask is 255).
    """

    def __init__(
        self,
        size: tuple[int, int] | None,
        scale: tuple[float, float] = (0.5, 2.0),
        fill: float = 0.0,
    ) -> None:
        if not 0.0 < scale[0] <= scale[1]:
            raise ValueError(f"scale range must be 0 < lo <= hi, got {scale}")
        self.size = size
        self.scale = scale
        self.fill = fill

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> Pair:
        height, width = mask.shape
        out_h, out_w = self.size or (height, width)
        s = _uniform(self.scale[0], self.scale[1], generator)
        new = (max(1, round(height * s)), max(1, round(width * s)))
        image, mask = resize_pair(image, mask, new)
        # Offsets range over every crop of the scaled image, or every placement of it
        # inside a larger window.
        top = _randint(min(0, new[0] - out_h), max(0, new[0] - out_h), generator)
        left = _randint(min(0, new[1] - out_w), max(0, new[1] - out_w), generator)
        return crop_pair(image, mask, top, left, (out_h, out_w), self.fill)


class RandomHorizontalFlip:
    """Mirror image and mask left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> Pair:
        if float(torch.rand((), generator=generator)) < self.p:
            return image.flip(-1), mask.flip(-1)
        return image, mask


class Resize:
    """Resize to ``(height, width)``: bilinear for the image, nearest for the mask."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> Pair:
        return resize_pair(image, mask, self.size)


class CenterCrop:
    """Central ``(height, width)`` window; smaller inputs are padded (mask: ignore)."""

    def __init__(self, size: tuple[int, int], fill: float = 0.0) -> None:
        self.size = size
        self.fill = fill

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> Pair:
        height, width = mask.shape
        top = (height - self.size[0]) // 2
        left = (width - self.size[1]) // 2
        return crop_pair(image, mask, top, left, self.size, self.fill)


class NormalizeImage:
    """``(image - mean) / std`` per channel; the mask passes through.

    Not used by the data sets (the model normalises); for users feeding other models.
    """

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> Pair:
        return (image - self.mean) / self.std, mask


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[PairTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> Pair:
        for transform in self.transforms:
            image, mask = transform(image, mask, generator)
        return image, mask


def train_transform(
    size: tuple[int, int] | None, *, scale: tuple[float, float] = (0.5, 2.0), flip: bool = True
) -> Compose:
    """The training augmentation: random scale, random crop to ``size``, horizontal flip.

    Args:
        size: output ``(height, width)``; None keeps each input's size.
        scale: range of the random scale factor.
        flip: whether to flip left-right half of the time.

    Returns:
        The pipeline.
    """
    steps: list[PairTransform] = [RandomScaleCrop(size, scale)]
    if flip:
        steps.append(RandomHorizontalFlip())
    return Compose(steps)


def eval_transform(size: tuple[int, int] | None, *, mode: str = "resize") -> Compose:
    """The evaluation transform: resize (or center-crop) to ``size``; None does nothing.

    Args:
        size: output ``(height, width)`` or None.
        mode: ``resize`` or ``center_crop``.

    Returns:
        The pipeline.
    """
    if mode not in ("resize", "center_crop"):
        raise ValueError(f"mode must be 'resize' or 'center_crop', got {mode!r}")
    if size is None:
        return Compose([])
    return Compose([Resize(size) if mode == "resize" else CenterCrop(size)])
