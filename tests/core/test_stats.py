import json

import numpy as np
import pytest

from mess.stats import (
    Stats,
    StatsError,
    load_stats,
    miou,
    per_class_iou,
    save_stats,
    validate_stats,
)
from mess.testing import random_stats


@pytest.fixture
def stats() -> Stats:
    return random_stats(num_samples=6, num_classes=3, positions=2, heads=2, seed=3)


def _copy(stats: Stats) -> Stats:
    return Stats(
        meta=json.loads(json.dumps(stats.meta)),
        intersection=stats.intersection.copy(),
        predicted=stats.predicted.copy(),
        target=stats.target.copy(),
        confidence=stats.confidence.copy(),
    )


def test_save_then_load_gives_the_same_arrays_and_meta(stats, tmp_path):
    path = tmp_path / "s.npz"
    save_stats(stats, path)
    back = load_stats(path)
    assert back.meta == stats.meta
    for name in ("intersection", "predicted", "target", "confidence"):
        np.testing.assert_array_equal(getattr(back, name), getattr(stats, name))
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temporary left behind


def test_properties_describe_the_exit_axis(stats):
    assert stats.num_samples == 6 and stats.num_classes == 3
    assert stats.exit_ids == [e["id"] for e in stats.exits] + ["final"]
    assert len(stats.exit_ids) == stats.intersection.shape[1]
    assert stats.pixel_thresholds == [0.5, 0.7, 0.9]
    assert stats.class_names == ["class0", "class1", "class2"]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda s: s.intersection.__setitem__((2, 1, 0), -1), "intersection[2, 1, 0] is negative"),
        (lambda s: s.predicted.__setitem__((1, 0, 2), s.predicted[1, 0, 2] + 1), "predicted[1, 0]"),
        (
            lambda s: s.intersection.__setitem__((0, 2, 1), s.predicted[0, 2, 1] + 1),
            "intersection[0, 2, 1]",
        ),
        (lambda s: s.confidence.__setitem__((3, 1, 0), 1.5), "confidence[3, 1, 0] = 1.5"),
        (
            lambda s: s.confidence.__setitem__((3, 1, 0), np.nan),
            "confidence[3, 1, 0] is not finite",
        ),
        (lambda s: s.confidence.__setitem__((4, 0, 2), 1.0), "confidence[4, 0, 2]"),
        (lambda s: s.meta.__setitem__("format", "other"), "meta.format"),
        (lambda s: s.meta.__setitem__("version", 2), "meta.version"),
        (lambda s: s.meta.__setitem__("num_samples", 7), "meta.num_samples"),
        (lambda s: s.meta["exits"].pop(), "meta.exits"),
        (lambda s: s.meta.__setitem__("pixel_thresholds", [0.5, 0.9, 0.7]), "must increase"),
        (lambda s: s.meta.__setitem__("pixel_thresholds", [0.5]), "meta.pixel_thresholds"),
    ],
)
def test_validation_names_the_array_and_the_first_bad_index(stats, corrupt, message):
    bad = _copy(stats)
    corrupt(bad)
    with pytest.raises(StatsError, match=None) as info:
        validate_stats(bad)
    assert message in str(info.value)


def test_wrong_shape_and_dtype_are_rejected(stats):
    bad = _copy(stats)
    bad.target = bad.target[:, :2]
    with pytest.raises(StatsError, match="shape"):
        validate_stats(bad)
    bad = _copy(stats)
    bad.predicted = bad.predicted.astype(np.float32)
    with pytest.raises(StatsError, match="predicted must hold integers"):
        validate_stats(bad)


def test_load_rejects_a_missing_array_and_bad_meta(stats, tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, meta=np.array(json.dumps(stats.meta)), intersection=stats.intersection)
    with pytest.raises(StatsError, match="missing array 'predicted'"):
        load_stats(path)
    np.savez(
        path,
        meta=np.array("{not json"),
        intersection=stats.intersection,
        predicted=stats.predicted,
        target=stats.target,
        confidence=stats.confidence,
    )
    with pytest.raises(StatsError, match="meta is not valid JSON"):
        load_stats(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(StatsError, match="not a readable"):
        load_stats(tmp_path / "junk.npz")


def test_miou_follows_the_summed_formula(stats):
    rng = np.random.default_rng(0)
    x = rng.integers(0, stats.intersection.shape[1], stats.num_samples)
    ious = []
    for c in range(stats.num_classes):
        inter = sum(int(stats.intersection[n, x[n], c]) for n in range(stats.num_samples))
        union = sum(
            int(stats.predicted[n, x[n], c] + stats.target[n, c] - stats.intersection[n, x[n], c])
            for n in range(stats.num_samples)
        )
        if union:
            ious.append(inter / union)
    assert miou(stats, x) == pytest.approx(sum(ious) / len(ious), rel=1e-15)
    np.testing.assert_allclose(per_class_iou(stats, x), ious)


def test_classes_with_an_empty_union_are_left_out():
    stats = random_stats(num_samples=4, num_classes=3, positions=1, heads=1, seed=1)
    stats.intersection[:, :, 2] = 0
    stats.predicted[:, :, 0] += stats.predicted[:, :, 2]
    stats.predicted[:, :, 2] = 0
    stats.target[:, 0] += stats.target[:, 2]
    stats.target[:, 2] = 0
    validate_stats(stats)
    x = np.zeros(4, dtype=np.int64)
    iou = per_class_iou(stats, x)
    assert np.isnan(iou[2])
    assert miou(stats, x) == pytest.approx(np.nanmean(iou))


def test_miou_rejects_a_bad_assignment(stats):
    with pytest.raises(ValueError, match="exit indices"):
        miou(stats, np.full(stats.num_samples, 99))
