import hashlib

import pytest

from mess.data.synth import SynthConfig, generate

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
