"""bench.easy_share: the subsets by share of easy images and the score of a share."""

from __future__ import annotations

import numpy as np
import pytest

from bench import easy_share
from mess.search import Configuration, evaluate
from mess.stats import validate_stats
from mess.testing import random_costs, random_stats

DIFFICULTY = [0.1, 0.9, 0.3, 0.7, 0.45, 0.5, 0.2, 0.95, 0.05, 0.6]  # easy: 0 2 4 6 8


def test_subsets_hold_the_share_asked_and_the_first_of_each_kind() -> None:
    d = np.asarray(DIFFICULTY)
    for share, easy in ((0.0, 0), (0.5, 2), (0.75, 3), (1.0, 4)):
        idx = easy_share.share_subset(DIFFICULTY, share, 4)
        assert len(idx) == 4 and int(np.sum(d[idx] < easy_share.EASY_BELOW)) == easy
    assert easy_share.share_subset(DIFFICULTY, 0.5, 4).tolist() == [0, 1, 2, 3]
    assert easy_share.subset_size([DIFFICULTY, [0.1, 0.2, 0.9]]) == 1
    with pytest.raises(ValueError, match="5 easy"):
        easy_share.share_subset(DIFFICULTY, 1.0, 6)
    with pytest.raises(ValueError, match="share"):
        easy_share.share_subset(DIFFICULTY, 1.5, 2)


def test_selected_samples_are_valid_stats_of_those_images() -> None:
    stats = random_stats(num_samples=12, seed=3)
    idx = np.array([1, 4, 7])
    part = easy_share.select_samples(stats, idx)
    validate_stats(part)
    assert part.num_samples == 3 and part.meta["num_samples"] == 3
    assert np.array_equal(part.target, stats.target[idx])


def test_a_share_is_chosen_on_calibration_and_scored_on_test() -> None:
    cal, test = random_stats(num_samples=30, seed=1), random_stats(num_samples=30, seed=2)
    costs = random_costs(cal, seed=1)
    scores = easy_share.score_share(cal, test, costs, max_exits=2)
    base = evaluate(test, costs, Configuration((), "final"))
    for mode in ("dynamic", "static"):
        s = scores[mode]
        assert s["predicted_delta_pp"] >= -0.1 - 1e-9  # within 0.1 pp on calibration
        assert np.isfinite(s["speedup"]) and np.isfinite(s["delta_pp"])
        assert base.expected_cost > 0
    assert scores["static"]["configuration"]["exits"] == []  # one exit always taken, no policy


def test_shares_argument_is_checked() -> None:
    with pytest.raises(SystemExit):
        easy_share.main(["--shares", "0,2"])
    with pytest.raises(SystemExit):
        easy_share.main(["--shares", "a"])
