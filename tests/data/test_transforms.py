import numpy as np
import pytest
import torch
from torchvision.models import ResNet18_Weights

from mess.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCrop,
    NormalizeImage,
    RandomHorizontalFlip,
    RandomScaleCrop,
    Resize,
    eval_transform,
    train_transform,
)


def _pair(h: int = 12, w: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Image whose every pixel is unique, and a mask of the same positions."""
    torch.manual_seed(0)
    image = torch.rand(3, h, w)
    mask = torch.arange(h * w).reshape(h, w) % 200
    return image, mask


def _quadrants(h: int = 32, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Four constant blocks: label k, every channel k / 4."""
    mask = torch.zeros(h, w, dtype=torch.long)
    mask[: h // 2, w // 2 :] = 1
    mask[h // 2 :, : w // 2] = 2
    mask[h // 2 :, w // 2 :] = 3
    return (mask.float() / 4).expand(3, h, w).clone(), mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_unit_scale_crop_of_same_size_is_identity():
    image, mask = _pair()
    out_img, out_mask = RandomScaleCrop((12, 16), scale=(1.0, 1.0))(image, mask, _gen(0))
    assert torch.equal(out_img, image) and torch.equal(out_mask, mask)


def test_crop_is_a_window_of_the_input():
    image, mask = _pair(20, 24)
    out_img, out_mask = RandomScaleCrop((8, 10), scale=(1.0, 1.0))(image, mask, _gen(3))
    found = [
        (t, l)
        for t in range(13)
        for l in range(15)  # noqa: E741
        if torch.equal(image[:, t : t + 8, l : l + 10], out_img)
        and torch.equal(mask[t : t + 8, l : l + 10], out_mask)
    ]
    assert len(found) == 1


def test_crop_offsets_cover_the_whole_range():
    image, mask = _pair(10, 10)
    corners = set()
    for seed in range(200):
        out = RandomScaleCrop((9, 9), scale=(1.0, 1.0))(image, mask, _gen(seed))[1]
        corners.add(int(out[0, 0]))
    assert corners == {int(mask[0, 0]), int(mask[0, 1]), int(mask[1, 0]), int(mask[1, 1])}


def test_padding_is_ignore_in_mask_and_fill_in_image():
    image, mask = _pair(6, 8)
    out_img, out_mask = RandomScaleCrop((10, 12), scale=(1.0, 1.0), fill=0.0)(image, mask, _gen(1))
    assert out_mask.shape == (10, 12) and int((out_mask != 255).sum()) == 48
    padded = out_mask == 255
    assert (out_img[:, padded] == 0).all()
    # The labelled region is the whole input, in one piece.
    rows, cols = torch.nonzero(~padded, as_tuple=True)
    top, left = int(rows.min()), int(cols.min())
    assert torch.equal(out_mask[top : top + 6, left : left + 8], mask)


def test_mask_upscaling_is_nearest_neighbour():
    image, mask = _pair(6, 8)
    out_mask = Resize((12, 16))(image, mask)[1]
    expected = np.kron(mask.numpy(), np.ones((2, 2), dtype=np.int64))
    assert np.array_equal(out_mask.numpy(), expected)
    assert out_mask.dtype == torch.int64


def test_mask_downscaling_keeps_only_existing_labels():
    image, mask = _pair(12, 16)
    out_mask = Resize((5, 7))(image, mask)[1]
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())


def test_image_resize_is_bilinear():
    # Bilinear with align_corners=False is exact on a linear ramp away from the borders.
    ramp = torch.arange(16, dtype=torch.float32).expand(3, 8, 16) / 16
    out = Resize((8, 32))(ramp.clone(), torch.zeros(8, 16, dtype=torch.long))[0]
    centres = (torch.arange(32) + 0.5) / 2 - 0.5  # source coordinate of each output column
    assert torch.allclose(out[0, 0, 2:-2], centres[2:-2] / 16, atol=1e-6)


def test_scaled_image_and_mask_stay_aligned():
    image, mask = _quadrants()
    for seed in range(10):
        out_img, out_mask = RandomScaleCrop((32, 32), scale=(0.5, 2.0))(image, mask, _gen(seed))
        # Away from label borders (2 pixels, the reach of the antialiasing filter) the
        # image still shows the colour of the mask's label.
        m = out_mask[None, None].float()
        high = torch.nn.functional.max_pool2d(m, 5, 1, 2)[0, 0]
        low = -torch.nn.functional.max_pool2d(-m, 5, 1, 2)[0, 0]
        inner = (high == low) & (out_mask != 255)
        assert inner.sum() >= 16
        assert torch.allclose(out_img[0][inner] * 4, out_mask[inner].float(), atol=1e-4)


def test_flip_applies_to_both_or_neither():
    image, mask = _pair()
    flips = 0
    for seed in range(40):
        out_img, out_mask = RandomHorizontalFlip()(image, mask, _gen(seed))
        flipped = torch.equal(out_mask, mask.flip(-1))
        assert flipped or torch.equal(out_mask, mask)
        assert torch.equal(out_img, image.flip(-1) if flipped else image)
        flips += flipped
    assert 5 < flips < 35


def test_train_transform_is_deterministic_given_a_generator():
    image, mask = _pair(20, 20)
    t = train_transform((16, 16))
    a = t(image, mask, _gen(5))
    b = t(image, mask, _gen(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    outs = {t(image, mask, _gen(s))[1].sum().item() for s in range(10)}
    assert len(outs) > 5


def test_train_transform_output_size_and_types():
    image, mask = _pair(20, 30)
    for seed in range(5):
        out_img, out_mask = train_transform((16, 24))(image, mask, _gen(seed))
        assert out_img.shape == (3, 16, 24) and out_img.dtype == torch.float32
        assert out_mask.shape == (16, 24) and out_mask.dtype == torch.int64
        assert out_img.min() >= 0.0 and out_img.max() <= 1.0


def test_train_transform_without_size_keeps_input_size():
    image, mask = _pair(10, 14)
    assert train_transform(None)(image, mask, _gen(0))[1].shape == (10, 14)


def test_center_crop_takes_the_middle():
    image, mask = _pair(10, 12)
    out_img, out_mask = CenterCrop((4, 6))(image, mask)
    assert torch.equal(out_mask, mask[3:7, 3:9]) and torch.equal(out_img, image[:, 3:7, 3:9])


def test_eval_transform_resizes_or_crops():
    image, mask = _pair(10, 12)
    assert eval_transform((5, 6))(image, mask)[1].shape == (5, 6)
    assert torch.equal(eval_transform((4, 6), mode="center_crop")(image, mask)[1], mask[3:7, 3:9])
    assert eval_transform(None)(image, mask)[1] is mask
    with pytest.raises(ValueError):
        eval_transform((4, 4), mode="pad")


def test_imagenet_statistics_match_torchvision_weights():
    reference = ResNet18_Weights.IMAGENET1K_V1.transforms()
    assert list(IMAGENET_MEAN) == pytest.approx(reference.mean)
    assert list(IMAGENET_STD) == pytest.approx(reference.std)


def test_normalize_matches_torchvision_normalize():
    from torchvision.transforms.functional import normalize

    image, mask = _pair()
    out_img, out_mask = NormalizeImage()(image, mask)
    expected = normalize(image, list(IMAGENET_MEAN), list(IMAGENET_STD))
    assert torch.allclose(out_img, expected) and out_mask is mask
