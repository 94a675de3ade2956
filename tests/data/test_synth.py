import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mess.data import synth
from mess.data.folders import CITYSCAPES_CLASSES
from mess.data.synth import SynthConfig, class_names, generate, image_seed, write_folder

TINY = SynthConfig(num_classes=8, height=48, width=64)


def _lookup_accuracy(image: np.ndarray, mask: np.ndarray) -> float:
    """Pixel accuracy of the best per-pixel colour lookup: nearest class-mean colour,
    with the means taken from the image's own labels (an oracle for colour alone)."""
    valid = mask != 255
    x, y = image[valid].astype(np.float32), mask[valid]
    classes = np.unique(y)
    centres = np.stack([x[y == c].mean(0) for c in classes])
    pred = classes[((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)]
    return float((pred == y).mean())


def test_same_split_and_index_give_identical_images():
    a = generate(TINY, "train", 7)
    b = generate(TINY, "train", 7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_image_depends_only_on_its_own_seed_not_on_call_order():
    later = generate(TINY, "calibration", 3)
    for i in range(3):
        generate(TINY, "calibration", i)
    again = generate(TINY, "calibration", 3)
    assert np.array_equal(later[0], again[0])


def test_splits_and_indices_give_different_images():
    images = [generate(TINY, s, i)[0] for s in synth.SPLITS for i in range(3)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])


@given(
    st.sampled_from(synth.SPLITS),
    st.integers(0, 2**32 - 1),
    st.integers(0, 1000),
    st.sampled_from(synth.SPLITS),
    st.integers(0, 2**32 - 1),
    st.integers(0, 1000),
)
def test_seed_ranges_of_splits_are_disjoint(s1, i1, b1, s2, i2, b2):
    if (s1, i1, b1) != (s2, i2, b2):
        assert image_seed(s1, i1, b1) != image_seed(s2, i2, b2)


def test_unknown_split_and_bad_index_are_rejected():
    with pytest.raises(ValueError, match="split"):
        generate(TINY, "val", 0)
    with pytest.raises(ValueError, match="index"):
        generate(TINY, "train", -1)


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (33, 97), (64, 64), (128, 256)])
def test_any_resolution_gives_uint8_image_and_mask(size):
    config = SynthConfig(num_classes=19, height=size[0], width=size[1])
    for index in range(4):
        image, mask, d = generate(config, "test", index)
        assert image.shape == (*size, 3) and image.dtype == np.uint8
        assert mask.shape == size and mask.dtype == np.uint8
        assert 0.0 <= d <= 1.0


@pytest.mark.parametrize("num_classes", [4, 8, 19])
def test_labels_are_class_ids_or_ignore(num_classes):
    config = SynthConfig(num_classes=num_classes)
    for index in range(20):
        mask = generate(config, "train", index)[1]
        assert ((mask < num_classes) | (mask == 255)).all()


def test_class_names_default_eight_and_nineteen_is_cityscapes():
    assert len(class_names()) == 8
    assert class_names(19) == list(CITYSCAPES_CLASSES)
    assert {"road", "building", "sky", "car"} <= set(class_names(4))


def test_fewer_classes_keep_a_subset_in_cityscapes_order():
    for n in range(4, 19):
        small, big = class_names(n), class_names(n + 1)
        assert set(small) < set(big) and len(small) == n
        assert small == [c for c in CITYSCAPES_CLASSES if c in small]


def test_fewer_classes_drop_the_rarer_ones():
    # The kept classes should cover more pixels (in the 19-class rendering) than the dropped.
    config = SynthConfig(num_classes=19, height=64, width=64)
    counts = np.zeros(19)
    for i in range(40):
        mask = generate(config, "train", i)[1]
        counts += np.bincount(mask[mask != 255], minlength=19)
    kept = [CITYSCAPES_CLASSES.index(c) for c in class_names(8)]
    dropped = [i for i in range(19) if i not in kept]
    assert counts[kept].min() > np.median(counts[dropped])


@pytest.mark.parametrize("num_classes", [8, 19])
def test_every_class_appears(num_classes):
    config = SynthConfig(num_classes=num_classes, height=64, width=64)
    seen = set()
    for i in range(60):
        mask = generate(config, "train", i)[1]
        seen |= set(np.unique(mask).tolist())
    assert set(range(num_classes)) <= seen


def test_class_count_outside_4_to_19_is_rejected():
    for bad in (3, 20):
        with pytest.raises(ValueError, match="num_classes"):
            SynthConfig(num_classes=bad)
        with pytest.raises(ValueError, match="num_classes"):
            class_names(bad)


def test_difficulty_spreads_over_the_whole_range():
    ds = np.array([synth.difficulty_of(TINY, "train", i) for i in range(400)])
    assert ds.min() < 0.03 and ds.max() > 0.97
    assert 0.4 < np.mean(ds < 0.5) < 0.6  # uniform: half easy, half hard


def test_difficulty_of_matches_generate():
    for i in range(5):
        assert synth.difficulty_of(TINY, "test", i) == generate(TINY, "test", i)[2]


def test_difficulty_range_of_config_is_respected():
    config = SynthConfig(min_difficulty=0.2, max_difficulty=0.3)
    ds = [generate(config, "train", i)[2] for i in range(20)]
    assert min(ds) >= 0.2 and max(ds) <= 0.3


def test_harder_images_have_more_label_boundaries():
    ds, density = [], []
    for i in range(80):
        _, mask, d = generate(TINY, "train", i)
        ds.append(d)
        density.append((mask[:, 1:] != mask[:, :-1]).mean() + (mask[1:] != mask[:-1]).mean())
    rank_d, rank_b = np.argsort(np.argsort(ds)), np.argsort(np.argsort(density))
    assert np.corrcoef(rank_d, rank_b)[0, 1] > 0.4  # Spearman correlation


def test_colour_lookup_works_on_easy_images_but_not_on_hard_ones():
    easy = [_lookup_accuracy(*generate(TINY, "test", i, difficulty=0.02)[:2]) for i in range(15)]
    hard = [_lookup_accuracy(*generate(TINY, "test", i, difficulty=0.98)[:2]) for i in range(15)]
    assert np.mean(easy) > 0.95
    assert np.mean(hard) < 0.6


def test_layout_sky_above_buildings_above_road():
    names = class_names(8)
    sky, building, road = (names.index(c) for c in ("sky", "building", "road"))
    rows = np.broadcast_to(np.arange(64)[:, None], (64, 64))
    config = SynthConfig(num_classes=8, height=64, width=64)
    ordered = total = 0
    for i in range(60):
        mask = generate(config, "train", i)[1]
        if all((mask == c).any() for c in (sky, building, road)):
            total += 1
            mean_row = [rows[mask == c].mean() for c in (sky, building, road)]
            ordered += mean_row[0] < mean_row[1] < mean_row[2]
    assert total >= 40 and ordered / total > 0.9


def test_cars_stand_on_the_road():
    names = class_names(8)
    car, road = names.index("car"), names.index("road")
    below_car_is_road = below_car = 0
    for i in range(40):
        mask = generate(TINY, "train", i)[1]
        # The pixel just under each car pixel that is the bottom of its column's car run.
        bottom = (mask[:-1] == car) & (mask[1:] != car) & (mask[1:] != 255)
        below = mask[1:][bottom]
        below_car += below.size
        below_car_is_road += int((below == road).sum())
    assert below_car > 0 and below_car_is_road / below_car > 0.7


def test_ignore_band_is_thin_and_on_object_borders():
    with_band = 0
    for i in range(40):
        mask = generate(TINY, "train", i)[1]
        ignore = mask == 255
        if not ignore.any():
            continue
        with_band += 1
        assert ignore.mean() < 0.1
        # Thin, and on borders: within 2 pixels of every ignored pixel there are labelled
        # pixels of two different classes or instances (a band is 1 pixel per object side;
        # where flagged objects meet, sides add up).
        labels = np.pad(mask, 2, mode="edge").astype(int)
        for r, c in zip(*np.nonzero(ignore), strict=True):
            window = labels[r : r + 5, c : c + 5]
            assert (window != 255).any()
    assert with_band >= 10


def test_write_folder_writes_pngs_and_meta_that_match_generate(tmp_path):
    out = write_folder(TINY, "calibration", 3, tmp_path / "cal")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["class_names"] == class_names(8) and meta["ignore_index"] == 255
    for i in range(3):
        stem = f"calibration_{i:06d}"
        image, mask, d = generate(TINY, "calibration", i)
        assert np.array_equal(np.asarray(Image.open(out / "images" / f"{stem}.png")), image)
        assert np.array_equal(np.asarray(Image.open(out / "masks" / f"{stem}.png")), mask)
        assert meta["difficulty"][stem] == pytest.approx(d, abs=1e-6)


def test_write_folder_reuses_a_complete_cache(tmp_path, monkeypatch):
    write_folder(TINY, "test", 2, tmp_path)
    monkeypatch.setattr(synth, "generate", lambda *a, **k: pytest.fail("regenerated"))
    write_folder(TINY, "test", 2, tmp_path)


def test_write_folder_regenerates_when_settings_change(tmp_path):
    write_folder(TINY, "test", 2, tmp_path)
    other = SynthConfig(num_classes=5, height=48, width=64)
    write_folder(other, "test", 2, tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["num_classes"] == 5
    mask = np.asarray(Image.open(tmp_path / "masks" / "test_000000.png"))
    assert np.array_equal(mask, generate(other, "test", 0)[1])


def test_generator_modules_do_not_import_torch():
    code = (
        "import sys, mess.data, mess.data.synth, mess.data.folders\n"
        "from mess.data.synth import SynthConfig, generate\n"
        "generate(SynthConfig(), 'train', 0)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_speed_at_least_200_images_per_second_at_128_on_one_core():
    code = (
        "import time\n"
        "from mess.data.synth import SynthConfig, generate\n"
        "config = SynthConfig(num_classes=19, height=128, width=128)\n"
        "generate(config, 'train', 0)\n"
        "start = time.process_time()\n"
        "for i in range(300):\n"
        "    generate(config, 'train', i)\n"
        "print(300 / (time.process_time() - start))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    rate = float(out.stdout)
    assert rate >= 200, f"{rate:.0f} images/s"
