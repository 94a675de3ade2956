import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import mess.data
from mess.data import DataError, build_dataset
from mess.data.folders import CITYSCAPES_CLASSES, VOC_CLASSES
from mess.data.synth import SynthConfig, class_names, generate, write_folder
from tests.data.conftest import make_cityscapes, make_plain, make_voc


def _expected(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent conversion: HWC uint8 -> CHW float in [0,1]; mask -> int64."""
    img = torch.tensor(image.astype(np.float64) / 255.0, dtype=torch.float32).permute(2, 0, 1)
    return img, torch.tensor(mask.astype(np.int64))


def test_synth_dataset_yields_float_image_and_int64_mask():
    ds = build_dataset("synth", "test", length=4)
    image, mask = ds[2]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert mask.shape == (64, 64) and mask.dtype == torch.int64
    ref_img, ref_mask = _expected(*generate(SynthConfig(), "test", 2)[:2])
    assert torch.allclose(image, ref_img) and torch.equal(mask, ref_mask)


def test_synth_dataset_attributes():
    ds = build_dataset("synth:19", "calibration", size=(32, 48), length=3)
    assert ds.num_classes == 19 and ds.class_names == CITYSCAPES_CLASSES
    assert ds.ignore_index == 255 and len(ds) == 3
    assert ds[0][0].shape == (3, 32, 48)


def test_synth_default_lengths():
    assert [len(build_dataset("synth", s)) for s in ("train", "calibration", "test")] == [
        2000,
        500,
        500,
    ]


def test_synth_num_classes_from_argument_or_spec():
    assert build_dataset("synth", "test", num_classes=5).class_names == tuple(class_names(5))
    with pytest.raises(DataError, match="num_classes"):
        build_dataset("synth:5", "test", num_classes=6)
    with pytest.raises(DataError, match="num_classes"):
        build_dataset("synth:40", "test")


def test_synth_images_do_not_depend_on_the_augmentation_seed():
    a = build_dataset("synth", "test", length=2, seed=0)[1]
    b = build_dataset("synth", "test", length=2, seed=9)[1]
    assert torch.equal(a[0], b[0])


def test_synth_splits_differ():
    train = build_dataset("synth", "train", length=1)[0][0]
    test = build_dataset("synth", "test", length=1)[0][0]
    assert not torch.equal(train, test)


def test_dataset_is_not_normalised():
    image = build_dataset("synth", "test", length=1)[0][0]
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_train_augmentation_is_deterministic_per_seed_and_epoch():
    ds = build_dataset("synth", "train", train=True, length=4, seed=3)
    a = ds[1]
    assert torch.equal(a[1], ds[1][1])  # same epoch, same sample: same augmentation
    other_seed = build_dataset("synth", "train", train=True, length=4, seed=4)
    ds.set_epoch(1)
    changed = [not torch.equal(a[1], d[1][1]) for d in (other_seed, ds)]
    assert all(changed)


def test_train_augmentation_keeps_the_training_size():
    ds = build_dataset("synth", "train", size=(32, 40), train=True, length=6)
    for i in range(6):
        image, mask = ds[i]
        assert image.shape == (3, 32, 40) and mask.shape == (32, 40)


def test_a_unit_scale_range_leaves_only_the_flip():
    plain = build_dataset("synth", "train", size=(32, 32), length=6)
    flips = build_dataset(
        "synth", "train", size=(32, 32), train=True, augment_scale=(1.0, 1.0), length=6
    )
    flipped = 0
    for i in range(6):
        (image, mask), (aug_image, aug_mask) = plain[i], flips[i]
        same = torch.equal(mask, aug_mask) and torch.allclose(image, aug_image)
        mirrored = torch.equal(mask.flip(-1), aug_mask) and torch.allclose(
            image.flip(-1), aug_image
        )
        assert same or mirrored
        flipped += not same
    assert 0 < flipped < 6  # flip in half the samples, about
    wide = build_dataset("synth", "train", size=(32, 32), train=True, length=6)
    assert any(not torch.equal(plain[i][1], wide[i][1]) for i in range(6))


def test_augmentation_does_not_depend_on_loader_workers_or_order():
    ds = build_dataset("synth", "train", size=(32, 32), train=True, length=6, seed=1)
    direct = torch.stack([ds[i][1] for i in range(6)])
    loader = DataLoader(ds, batch_size=3, num_workers=2)
    loaded = torch.cat([mask for _, mask in loader])
    assert torch.equal(direct, loaded)
    reversed_masks = torch.stack([ds[i][1] for i in reversed(range(6))]).flip(0)
    assert torch.equal(direct, reversed_masks)


def test_folder_round_trip_of_write_folder(tmp_path):
    config = SynthConfig(num_classes=6, height=24, width=40)
    write_folder(config, "calibration", 3, tmp_path)
    ds = build_dataset(f"folder:{tmp_path}", "calibration")
    assert ds.class_names == tuple(class_names(6)) and len(ds) == 3
    for i in range(3):
        ref = _expected(*generate(config, "calibration", i)[:2])
        image, mask = ds[i]
        assert torch.allclose(image, ref[0]) and torch.equal(mask, ref[1])


def test_cityscapes_spec(tmp_path):
    written = make_cityscapes(tmp_path)
    ds = build_dataset(f"cityscapes:{tmp_path}", "calibration")
    assert ds.num_classes == 19 and len(ds) == 3
    stem = sorted(written)[0]
    ref = _expected(*written[stem])
    assert torch.allclose(ds[0][0], ref[0]) and torch.equal(ds[0][1], ref[1])


def test_voc_spec_with_eval_resize(tmp_path):
    make_voc(tmp_path)
    ds = build_dataset(f"voc:{tmp_path}", "train", size=(24, 32))
    assert ds.class_names == VOC_CLASSES
    image, mask = ds[0]
    assert image.shape == (3, 24, 32) and mask.shape == (24, 32)


def test_real_data_length_keeps_the_first_samples(tmp_path):
    make_plain(tmp_path, ["a", "b", "c"], class_names=list("abcde"))
    ds = build_dataset(f"folder:{tmp_path}", "test", length=2)
    assert len(ds) == 2 and ds.source.samples[1].stem == "b"


def test_num_classes_must_match_a_real_data_set(tmp_path):
    make_cityscapes(tmp_path)
    with pytest.raises(DataError, match="19 classes"):
        build_dataset(f"cityscapes:{tmp_path}", "val", num_classes=8)


def test_folder_num_classes_names_classes_without_meta(tmp_path):
    make_plain(tmp_path, ["a"], num_classes=3)
    assert build_dataset(f"folder:{tmp_path}", "train", num_classes=4).num_classes == 4


@pytest.mark.parametrize("spec", ["imagenet:/x", "cityscapes", "synth:many"])
def test_bad_spec_is_a_data_error(spec):
    with pytest.raises(DataError):
        build_dataset(spec, "train")


def test_unknown_synth_split_is_a_data_error():
    with pytest.raises(DataError, match="split"):
        build_dataset("synth", "holdout")


def test_index_out_of_range_raises_index_error():
    ds = build_dataset("synth", "test", length=2)
    with pytest.raises(IndexError):
        ds[2]


def test_torch_names_are_exported_lazily_from_the_package():
    assert mess.data.build_dataset is build_dataset
    assert mess.data.IMAGENET_MEAN == (0.485, 0.456, 0.406)
    with pytest.raises(AttributeError):
        mess.data.not_a_name  # noqa: B018
