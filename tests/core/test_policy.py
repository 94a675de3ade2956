import numpy as np
import pytest

from mess.policy import confidence_map, image_scores, leaves


def _softmax_top1(logits):
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0)).max(axis=0)


def test_confidence_is_top1_softmax_away_from_boundaries():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 8, 8)).astype(np.float32)
    logits[2] += 10.0  # one label everywhere: no boundary band
    np.testing.assert_allclose(confidence_map(logits), _softmax_top1(logits), rtol=1e-6)


def test_boundary_band_takes_the_neighbourhood_maximum():
    logits = np.zeros((2, 6, 6), dtype=np.float32)
    logits[0, :, :3] = 4.0  # left half class 0, confident
    logits[1, :, 3:] = 1.0  # right half class 1, less confident
    logits[1, :, 3] = 0.1  # barely class 1 at the boundary column
    conf = confidence_map(logits)
    raw = _softmax_top1(logits)
    # columns 2 and 3 form the band: each takes the max of its 3x3 neighbourhood
    np.testing.assert_allclose(conf[:, 2], raw[:, 1:4].max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(conf[:, 3], raw[:, 2:5].max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(conf[:, [0, 1, 4, 5]], raw[:, [0, 1, 4, 5]], rtol=1e-6)


def test_image_score_is_the_fraction_of_confident_pixels():
    logits = np.zeros((3, 4, 5), dtype=np.float32)
    logits[0] = 10.0  # confident everywhere...
    logits[:, 0, :] = 0.0  # ...but the first row is uniform (1/3), not a label boundary
    scores = image_scores(logits, [0.2, 0.5, 0.99])
    assert scores.dtype == np.float32
    # row 0 ties all classes (argmax 0, same label as below), so no band: 1/3 confidence
    np.testing.assert_array_equal(scores, np.float32([20 / 20, 15 / 20, 15 / 20]))


def test_scores_never_increase_with_the_pixel_threshold():
    rng = np.random.default_rng(1)
    scores = image_scores(rng.normal(size=(6, 4, 9, 7)) * 2, np.linspace(0.3, 0.95, 8))
    assert np.all(np.diff(scores, axis=-1) <= 0)


@pytest.mark.parametrize(
    "ti,expected", [(0.7, True), (0.75, True), (0.7500000001, True), (0.76, False)]
)
def test_decision_compares_the_score_with_ti_in_float32(ti, expected):
    logits = np.zeros((2, 4, 5), dtype=np.float32)
    logits[0] = 10.0
    logits[:, 0, :] = 0.0  # score at tp 0.9 is exactly 15/20 = 0.75
    assert leaves(logits, 0.9, ti) is expected
