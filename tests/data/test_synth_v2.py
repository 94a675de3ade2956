import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from mess.data import DataError, build_dataset
from mess.data.synth import (
    SPLITS,
    SynthConfig,
    class_names,
    config_from_spec,
    difficulty_of,
    generate,
    spec_of,
    split_balance,
    stratified_unit,
    write_folder,
)
from tests.data.test_synth import _lookup_accuracy

# sha256 (first 16 hex digits) of image bytes + mask bytes of version 1, taken from the
# generator as published: the tiny demo, its tests and every cached folder rely on them.
V1_PINNED = [
    ((8, 48, 64, 0), "train", 0, 0.6369616873214543, "f1b634859a4683e5"),
    ((8, 48, 64, 0), "calibration", 7, 0.7701409510034741, "84b950879217d0f5"),
    ((19, 64, 96, 3), "test", 11, 0.607857872157707, "92cca426fa54eccd"),
    ((4, 33, 57, 0), "train", 123, 0.6823518632481435, "751be14d3f12d92a"),
    ((8, 128, 128, 0), "test", 5, 0.23772096442823154, "7c9752e0a091acc6"),
]


@pytest.mark.parametrize(("shape", "split", "index", "difficulty", "digest"), V1_PINNED)
def test_version_1_pixels_are_unchanged(shape, split, index, difficulty, digest):
    classes, height, width, seed = shape
    config = SynthConfig(num_classes=classes, height=height, width=width, seed=seed)
    image, mask, d = generate(config, split, index)
    assert d == difficulty
    assert hashlib.sha256(image.tobytes() + mask.tobytes()).hexdigest()[:16] == digest


V2 = SynthConfig(num_classes=19, height=64, width=64, version=2)
# The benchmark's split sizes (the small preset: 1024 train, 500 calibration, 500 test).
BENCH_LENGTHS = {"train": 1024, "calibration": 500, "test": 500}
# Those of the first headline runs, on version 1 (640 train, 400 calibration, 200 test).
FIRST_BENCH_LENGTHS = {"train": 640, "calibration": 400, "test": 200}


def _pair_distance(config, a, b, difficulty, count=60):
    """Median over images of the distance between the mean RGB of classes a and b."""
    names = class_names(config.num_classes)
    out = []
    for i in range(count):
        image, mask, _ = generate(config, "test", i, difficulty=difficulty)
        in_a, in_b = mask == names.index(a), mask == names.index(b)
        if in_a.sum() >= 4 and in_b.sum() >= 4:
            out.append(np.linalg.norm(image[in_a].mean(0) - image[in_b].mean(0)))
    assert len(out) >= 3, f"too few images with both {a} and {b}"
    return float(np.median(out))


def test_version_2_is_deterministic_per_seed():
    a, b = generate(V2, "train", 4), generate(V2, "train", 4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    other = generate(replace(V2, seed=1), "train", 4)
    assert not np.array_equal(a[0], other[0])


def test_version_2_differs_from_version_1_but_easy_images_stay_easy():
    v1 = replace(V2, version=1)
    assert not np.array_equal(generate(V2, "test", 0)[0], generate(v1, "test", 0)[0])
    easy = [_lookup_accuracy(*generate(V2, "test", i, difficulty=0.05)[:2]) for i in range(10)]
    assert np.mean(easy) > 0.9


@pytest.mark.parametrize(
    ("a", "b"),
    [("road", "sidewalk"), ("building", "wall"), ("person", "pole"), ("vegetation", "terrain")],
)
def test_look_alikes_share_their_colour_on_hard_images_only(a, b):
    assert _pair_distance(V2, a, b, difficulty=0.95) < 30.0
    assert _pair_distance(V2, a, b, difficulty=0.05) > 60.0


def test_version_1_hard_images_keep_road_and_sidewalk_apart():
    # What version 2 changes: in version 1 the pair stays told apart by colour when hard.
    assert _pair_distance(replace(V2, version=1), "road", "sidewalk", difficulty=0.95) > 40.0


def test_version_2_difficulty_of_matches_generate():
    for i in range(5):
        assert difficulty_of(V2, "calibration", i) == generate(V2, "calibration", i)[2]


@pytest.mark.parametrize("n", [10, 37, 200, 1000])
def test_stratified_difficulties_fill_every_tenth_of_the_range(n):
    # Any prefix covers the range evenly: each tenth holds n/10 images, up to rounding.
    units = [stratified_unit("test", i, seed=5) for i in range(n)]
    counts = np.histogram(units, bins=10, range=(0.0, 1.0))[0]
    assert np.abs(counts - n / 10).max() <= 2


def test_stratified_offsets_differ_between_splits_and_seeds():
    firsts = {stratified_unit(s, 0, seed) for s in SPLITS for seed in (0, 1)}
    assert len(firsts) == 6


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_version_2_splits_agree_within_one_standard_error(seed):
    balance = split_balance(replace(V2, seed=seed), BENCH_LENGTHS)
    assert balance["max_diff_se"] < 1.0
    for split, n in BENCH_LENGTHS.items():
        stats = balance["splits"][split]
        assert stats["n"] == n and stats["se"] == pytest.approx(stats["std"] / np.sqrt(n))


def test_split_balance_shows_version_1_published_imbalance():
    # The published version 1 splits: test easier than calibration by about 2.5 SE.
    balance = split_balance(SynthConfig(), FIRST_BENCH_LENGTHS)
    assert balance["max_diff_se"] > 2.0
    assert set(balance["pair"]) == {"calibration", "test"}


def test_difficulty_range_is_the_share_of_easy_images_knob():
    config = replace(V2, min_difficulty=0.0, max_difficulty=0.5)
    ds = np.array([difficulty_of(config, "train", i) for i in range(100)])
    assert ds.max() <= 0.5 and np.mean(ds < 0.2) == pytest.approx(0.4, abs=0.03)


def test_unknown_version_is_rejected():
    with pytest.raises(ValueError, match="version"):
        SynthConfig(version=3)


def test_write_folder_keeps_versions_apart(tmp_path):
    small = replace(V2, height=24, width=32, version=1)
    write_folder(small, "test", 2, tmp_path)
    write_folder(replace(small, version=2), "test", 2, tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["generator"]["version"] == 2 and meta["generator"]["config"]["version"] == 2
    mask = np.asarray(Image.open(tmp_path / "masks" / "test_000000.png"))
    assert np.array_equal(mask, generate(replace(small, version=2), "test", 0)[1])


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("", SynthConfig()),
        ("19", SynthConfig(num_classes=19)),
        ("19:version=2:seed=3", SynthConfig(num_classes=19, version=2, seed=3)),
        ("version=2", SynthConfig(version=2)),
        ("8:max_difficulty=0.5", SynthConfig(max_difficulty=0.5)),
    ],
)
def test_config_from_spec_and_back(arg, expected):
    config = config_from_spec(arg)
    assert config == expected
    assert config_from_spec(spec_of(config).partition(":")[2]) == config


@pytest.mark.parametrize(
    ("arg", "match"),
    [
        ("many", "N_CLASSES"),
        ("8:colour=red", "unknown option"),
        ("8:seed=x", "not a number"),
        ("8:19", "KEY=VALUE"),
        ("8:seed=1:seed=2", "twice"),
        ("8:version=5", "version"),
    ],
)
def test_config_from_spec_rejects_bad_specs(arg, match):
    with pytest.raises(ValueError, match=match):
        config_from_spec(arg)


def test_build_dataset_reads_version_and_seed_from_the_spec():
    ds = build_dataset("synth:12:version=2:seed=3", "test", size=(32, 40), length=2)
    config = SynthConfig(num_classes=12, height=32, width=40, version=2, seed=3)
    assert ds.source.config == config
    assert ds.source.name == "synth:12:version=2:seed=3 (test)"
    assert build_dataset("synth", "test", length=1).source.name == "synth:8 (test)"
    with pytest.raises(DataError, match="unknown option"):
        build_dataset("synth:8:colour=red", "test")
    with pytest.raises(DataError, match="num_classes"):
        build_dataset("synth:5:version=2", "test", num_classes=6)
