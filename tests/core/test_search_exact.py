"""The fast engines against the brute force, on many random small spaces."""

import importlib.util

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mess.search import Problem, SearchSpace, compute_front
from mess.search.brute import Evaluated
from mess.search.kernels import HAVE_NUMBA
from mess.testing import random_costs, random_stats
from tests.core.brute_checks import assert_front_equals_brute

GRID = [0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9]


@st.composite
def problems(draw, per_exit=None):
    seed = draw(st.integers(0, 10_000))
    stats = random_stats(
        num_samples=draw(st.integers(1, 20)),
        num_classes=draw(st.integers(1, 4)),
        positions=draw(st.integers(1, 4)),
        heads=draw(st.integers(1, 2)),
        pixel_thresholds=[0.5, 0.7, 0.9][: draw(st.integers(1, 3))],
        max_pixels=draw(st.sampled_from([3, 50, 4000])),
        seed=seed,
    )
    costs = random_costs(stats, seed=seed, integers=draw(st.booleans()))
    per = draw(st.booleans()) if per_exit is None else per_exit
    options = {
        "max_exits": draw(st.integers(0, 2 if per else 3)),
        "image_thresholds": sorted(draw(st.sets(st.sampled_from(GRID), min_size=1, max_size=3))),
        "per_exit_thresholds": per,
        "truncation": draw(st.booleans()),
    }
    if draw(st.booleans()):
        ids = [e["id"] for e in stats.exits]
        options["exits"] = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids)))
    return stats, costs, options, draw(st.randoms(use_true_random=False))


def check_against_brute_force(stats, costs, options, rnd, backend):
    space = SearchSpace(Problem(stats, costs), **options)
    brute = Evaluated.of(space)
    assert len(brute.ranks) == space.size()
    front = compute_front(stats, costs, backend=backend, device="cpu", **options)
    assert front.configs_evaluated == space.size()
    assert_front_equals_brute(front, brute, rnd, rounds=4)


FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@FAST
@given(problems())
def test_numba_engine_equals_brute_force(case):
    check_against_brute_force(*case, backend="numba")


@settings(max_examples=25, deadline=None, derandomize=True)
@given(problems())
def test_numpy_engine_equals_brute_force(case):
    check_against_brute_force(*case, backend="numpy")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
@settings(max_examples=10, deadline=None, derandomize=True)
@given(problems())
def test_torch_engine_on_cpu_equals_brute_force(case):
    check_against_brute_force(*case, backend="torch")


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@settings(max_examples=15, deadline=None, derandomize=True)
@given(problems(per_exit=True))
def test_per_exit_thresholds_equal_brute_force(case):
    check_against_brute_force(*case, backend="numba")


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_four_exits_deep_equal_brute_force():
    stats = random_stats(num_samples=9, num_classes=2, positions=5, heads=1, seed=11)
    costs = random_costs(stats, seed=11)
    options = {"max_exits": 4, "image_thresholds": [0.1, 0.5], "truncation": True}
    import random

    check_against_brute_force(stats, costs, options, random.Random(0), backend="numba")


def _large_counts():
    stats = random_stats(num_samples=6, num_classes=2, positions=2, heads=2, seed=5)
    for name in ("intersection", "predicted", "target"):
        setattr(stats, name, getattr(stats, name) * 5_000_000)
    assert np.iinfo(np.int32).max < stats.target.sum()
    return stats, random_costs(stats, seed=5), {"max_exits": 2, "image_thresholds": [0.25, 0.5]}


def test_large_pixel_counts_stay_exact_in_numpy():
    # sums beyond 2**24 force float64 products
    import random

    check_against_brute_force(*_large_counts(), random.Random(1), backend="numpy")


@pytest.mark.slow  # compiles the kernel's int64 specialisation
@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_large_pixel_counts_stay_exact_in_numba():
    import random

    check_against_brute_force(*_large_counts(), random.Random(1), backend="numba")
