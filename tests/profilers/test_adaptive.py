"""The adaptive protocol: the median's interval by hand, the stopping rule on a fake clock."""

from __future__ import annotations

import math

import numpy as np
import pytest

from profilers.measure import CHECK_EVERY, TIERS, cap_reached, time_session
from profilers.precision import median_halfwidth, median_ranks


def _binomial_tail(n: int, k: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2), exactly."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


@pytest.mark.parametrize(
    ("n", "ranks"), [(5, None), (6, (1, 6)), (16, (4, 13)), (24, (7, 18)), (100, (40, 61))]
)
def test_median_ranks_match_the_binomial_by_hand(n, ranks):
    # n=16: P(B<=3) = 697/65536 = 0.0106 <= 0.025 < P(B<=4) = 2517/65536 = 0.0384
    # n=24: P(B<=6) = 190051/2**24 = 0.0113 <= 0.025 < P(B<=7) = 536155/2**24 = 0.0320
    assert median_ranks(n) == ranks
    if ranks is not None:
        low = ranks[0]
        assert _binomial_tail(n, low - 1) <= 0.025 < _binomial_tail(n, low)


def test_median_ranks_for_many_runs_agree_with_the_exact_tail():
    for n in (1000, 5001):
        low, high = median_ranks(n)
        assert high == n - low + 1
        assert _binomial_tail(n, low - 1) <= 0.025 < _binomial_tail(n, low)


def test_the_halfwidth_is_the_wider_side_relative_to_the_median():
    # 16 runs: ranks 4 and 13 bound the median (1.0)
    samples = [0.9] * 3 + [0.98] + [1.0] * 8 + [1.05] + [2.0] * 3
    assert median_halfwidth(samples) == pytest.approx(0.05)
    assert median_halfwidth([1.0] * 5) is None  # too few for 95 %
    assert median_halfwidth([1.0] * 16) == 0.0


class _FakeSession:
    """Each run advances a fake clock by the next duration (ms) of ``durations``."""

    def __init__(self, durations):
        self.durations = iter(durations)
        self.now_ns = 0
        self.runs = 0

    def run(self, _outputs, _feeds):
        self.runs += 1
        self.now_ns += int(round(next(self.durations) * 1e6))


_WARMUP = [1.0] * 10  # settles after exactly 10 runs


def _time(durations, tier="quick"):
    session = _FakeSession(durations)
    timing = time_session(session, {}, tier=tier, clock=lambda: session.now_ns)
    assert timing.warmup_runs == 10
    return timing


@pytest.mark.parametrize(("outliers", "runs"), [(3, 16), (6, 24), (7, 32)])
def test_the_rule_stops_at_the_first_check_whose_interval_is_within_target(outliers, runs):
    """Runs of 1.0 ms after ``outliers`` slow ones (1.05 ms, 5 % over).

    The upper bound of the interval is the ``n - l + 1``-th smallest run, so it is a fast run
    once the outliers are fewer than ``l``: l(16) = 4, l(24) = 7, l(32) = 10 (checks at 16,
    then every 8), hence 3 outliers stop at 16, 6 at 24 and 7 at 32.
    """
    assert TIERS["quick"]["min_runs"] == 16 and CHECK_EVERY == 8
    timing = _time(_WARMUP + [1.05] * outliers + [1.0] * 1000)
    assert len(timing.samples_ms) == runs
    assert timing.halfwidth == 0.0
    before = timing.samples_ms[: runs - CHECK_EVERY]
    if runs > 16:  # the check before did not stop it: its interval reached the outliers
        assert median_halfwidth(before) == pytest.approx(0.05)


def test_a_noisy_source_stops_at_the_cap_and_reports_its_precision():
    # alternating 1 and 2 ms: the interval always spans both, +-33 % of the median
    timing = _time(_WARMUP + [1.0, 2.0] * 10_000)
    # the cap (2 s) is reached after 1334 runs: 667 x 1 ms + 667 x 2 ms = 2001 ms
    assert len(timing.samples_ms) == 1334
    assert sum(timing.samples_ms) == pytest.approx(2001)
    assert timing.halfwidth == pytest.approx(1 / 3)


def test_the_minimum_runs_come_before_the_ceiling():
    # 16 runs of 1.5-3 s take 36 s, past the 30 s ceiling per part after 14 of them
    timing = _time(_WARMUP + [1500.0, 3000.0] * 100)
    assert len(timing.samples_ms) == TIERS["quick"]["min_runs"]


def test_a_heavy_part_is_timed_past_the_cap_until_its_median_is_known():
    """Runs of 90-110 ms, spread evenly: by the 2 s cap only 20 runs, an interval of about
    +-4.5 % (the ranks around the median move by about sqrt(n) runs: 20 ms / sqrt(n)); the
    rule goes on, and stops at the first check within +-2 % (about 100 runs), far from the
    cap's 256 runs."""
    spec = TIERS["quick"]
    durations = np.random.default_rng(0).uniform(90.0, 110.0, 1000).tolist()
    at_cap = next(n for n in range(1, 100) if sum(durations[:n]) >= 1e3 * spec["max_seconds"])
    assert at_cap <= 22 and median_halfwidth(durations[:at_cap]) > 0.03
    timing = _time(_WARMUP + durations)
    runs = len(timing.samples_ms)
    assert 64 < runs < spec["cap_runs"]
    assert timing.halfwidth <= spec["target"]
    checks = [int(spec["min_runs"])]
    while checks[-1] < runs:
        checks.append(checks[-1] + max(CHECK_EVERY, checks[-1] // 10))
    assert checks[-1] == runs  # it stopped at a check: the first one within the target
    assert all(median_halfwidth(durations[:n]) > spec["target"] for n in checks[:-1])


def test_a_noisy_part_stops_at_the_cap_runs():
    # alternating 10 and 20 ms: never known to +-2 %; 134 runs by the 2 s cap, then to 256
    timing = _time(_WARMUP + [10.0, 20.0] * 1000)
    assert len(timing.samples_ms) == TIERS["quick"]["cap_runs"] == 256
    assert timing.halfwidth == pytest.approx(1 / 3)


def test_a_heavy_noisy_part_stops_at_the_ceiling():
    # alternating 100 and 200 ms: never known to +-2 %; 30 s allow 200 runs, fewer than 256
    timing = _time(_WARMUP + [100.0, 200.0] * 1000)
    assert len(timing.samples_ms) == 200
    assert sum(timing.samples_ms) == pytest.approx(30_000)
    assert timing.halfwidth == pytest.approx(1 / 3)


def test_fixed_tiers_keep_their_run_count():
    timing = _time(_WARMUP + [1.0, 2.0] * 10_000, tier="quick-fixed")
    # at least 64 runs and 1 s: 667 runs (334 x 1 + 333 x 2 = 1000 ms)
    assert len(timing.samples_ms) == 667
    assert float(np.sum(timing.samples_ms)) == pytest.approx(1000)


def test_the_cap_scales_with_the_streams_timed_together():
    quick = TIERS["quick"]  # 2 s, 256 runs, 30 s a part
    assert not cap_reached(quick, 1000, 1.9)
    assert cap_reached(quick, 256, 2.0) and not cap_reached(quick, 255, 29.9)
    assert cap_reached(quick, 20, 30.0)
    # three paths in one stream: 6 s, then the fewest runs of any path, or 90 s
    assert not cap_reached(quick, 1000, 5.9, streams=3)
    assert cap_reached(quick, 256, 6.0, streams=3) and not cap_reached(quick, 100, 89.0, 3)
    assert cap_reached(quick, 100, 90.0, streams=3)
