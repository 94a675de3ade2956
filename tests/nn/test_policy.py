import numpy as np
import torch

from mess import policy as reference
from mess.nn import policy


def _varied_logits(rng, c=6, h=24, w=20):
    yy, xx = np.mgrid[0:h, 0:w]
    flat = np.zeros((c, h, w))
    flat[1] = 3.0
    split = np.zeros((c, h, w))
    split[0, :, : w // 2] = 2.5
    split[3, :, w // 2 :] = 1.5
    graded = np.zeros((c, h, w))
    graded[2] = xx / w * 4
    noisy = rng.normal(size=(c, h, w)) * 2
    mixed = split + rng.normal(size=(c, h, w)) * 0.5
    return np.stack([flat, split, graded, noisy, mixed]).astype(np.float32)


def test_torch_policy_takes_the_same_decisions_as_the_numpy_reference():
    rng = np.random.default_rng(0)
    thresholds = [0.3, 0.5, 0.6, 0.7, 0.8, 0.9]
    for _ in range(20):
        logits = _varied_logits(rng)
        ours = policy.image_scores(torch.from_numpy(logits), thresholds).numpy()
        ref = reference.image_scores(logits, thresholds)
        np.testing.assert_array_equal(ours, ref)
        for ti in np.arange(0, 1, 0.05):
            got = policy.leaves(torch.from_numpy(logits), 0.7, float(ti)).numpy()
            want = [reference.leaves(x, 0.7, float(ti)) for x in logits]
            assert got.tolist() == want


def test_confidence_maps_agree_closely():
    rng = np.random.default_rng(1)
    logits = _varied_logits(rng)
    ours = policy.confidence_map(torch.from_numpy(logits)).numpy()
    np.testing.assert_allclose(ours, reference.confidence_map(logits), rtol=1e-6, atol=1e-7)
