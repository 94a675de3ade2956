"""``mess.pipeline.data``: the data seed reaches mess-synth's images, 0 keeps the published
splits, and the splits' difficulties are read without rendering."""

from __future__ import annotations

import numpy as np
import pytest

from mess.pipeline import PipelineError
from mess.pipeline.data import pipeline_dataset, split_difficulties

pytest.importorskip("torch")


def _image(data_seed: int) -> np.ndarray:
    ds = pipeline_dataset("synth:4", "test", data_seed=data_seed, size=(32, 32), length=2)
    return np.asarray(ds[1][0])


def test_the_data_seed_draws_other_images_and_zero_keeps_the_published_ones() -> None:
    from mess.data import build_dataset

    published = np.asarray(build_dataset("synth:4", "test", size=(32, 32), length=2)[1][0])
    assert np.array_equal(_image(0), published)
    assert not np.array_equal(_image(3), published)
    assert np.array_equal(_image(3), _image(3))


def test_split_difficulties_follow_the_data_seed(tmp_path) -> None:
    lengths = {"train": 5, "calibration": 4, "test": 3}
    zero = split_difficulties("synth:4", lengths, size=(32, 32), num_classes=4)
    assert zero is not None and {k: len(v) for k, v in zero.items()} == lengths
    assert all(0.0 <= d <= 1.0 for v in zero.values() for d in v)
    other = split_difficulties("synth:4", lengths, size=(32, 32), num_classes=4, data_seed=2)
    assert other is not None and other["test"] != zero["test"]
    from mess.data import SynthConfig, write_folder

    write_folder(SynthConfig(num_classes=4, height=8, width=8), "test", 1, tmp_path)
    assert split_difficulties(f"folder:{tmp_path}", {"test": 1}, size=(8, 8), num_classes=4) is None
    with pytest.raises(PipelineError, match="mess-synth only"):
        pipeline_dataset(f"folder:{tmp_path}", "test", data_seed=1)


def test_the_data_seed_travels_in_the_synth_spec() -> None:
    from mess.data import SynthConfig, SynthSource
    from mess.pipeline.data import seeded_spec

    assert seeded_spec("synth:19:version=2", 0) == "synth:19:version=2"
    assert seeded_spec("synth:19:version=2", 3) == "synth:19:version=2:seed=3"
    assert seeded_spec("synth", 3, num_classes=12) == "synth:12:seed=3"
    assert seeded_spec("synth:4:seed=1", 5) == "synth:4:seed=5"  # replaced, not given twice
    with pytest.raises(PipelineError, match="mess-synth only"):
        seeded_spec("voc:/data", 1)
    source = pipeline_dataset("synth:4", "test", data_seed=3, size=(32, 32), length=2).source
    assert isinstance(source, SynthSource) and source.config == SynthConfig(
        num_classes=4, height=32, width=32, seed=3
    )


def test_a_class_count_other_than_the_supernets_is_refused() -> None:
    with pytest.raises(PipelineError, match="classes"):
        pipeline_dataset("synth:4", "test", num_classes=6, size=(32, 32), length=2)
