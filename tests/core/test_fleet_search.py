"""Fleet search: one walk of the space, K cost tables, each front exactly its own search's."""

import dataclasses
import importlib.util

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mess.search import (
    NoFeasibleConfiguration,
    Problem,
    SearchSpace,
    compute_front,
    compute_fronts,
    search,
    search_fleet,
)
from mess.search.brute import Evaluated
from mess.search.collector import Collector
from mess.search.kernels import HAVE_NUMBA
from mess.testing import random_costs, random_stats
from tests.core.brute_checks import assert_front_equals_brute, point_key

GRID = [0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9]
ARRAYS = ("exp", "worst", "miou", "p90", "ranks", "counts")


@st.composite
def fleets(draw, per_exit=None):
    seed = draw(st.integers(0, 10_000))
    stats = random_stats(
        num_samples=draw(st.integers(1, 12)),
        num_classes=draw(st.integers(1, 3)),
        positions=draw(st.integers(1, 3)),
        heads=draw(st.integers(1, 2)),
        pixel_thresholds=[0.5, 0.7, 0.9][: draw(st.integers(1, 2))],
        max_pixels=draw(st.sampled_from([3, 50, 4000])),
        seed=seed,
    )
    k = draw(st.integers(2, 3))
    # integer costs make exact ties in expected cost, within and across tables
    tables = [
        random_costs(stats, seed=seed + 101 * i, integers=draw(st.booleans())) for i in range(k)
    ]
    per = draw(st.booleans()) if per_exit is None else per_exit
    options = {
        "max_exits": draw(st.integers(0, 2 if per else 3)),
        "image_thresholds": sorted(draw(st.sets(st.sampled_from(GRID), min_size=1, max_size=3))),
        "per_exit_thresholds": per,
        "truncation": draw(st.booleans()),
    }
    return stats, tables, options, draw(st.randoms(use_true_random=False))


def assert_same_front(a, b):
    """Bit for bit on the stored arrays, and the same header."""
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name
    assert a.space == b.space
    assert a.reference_miou == b.reference_miou
    assert a.configs_evaluated == b.configs_evaluated


def check_fleet(stats, tables, options, rnd, backend):
    fronts = compute_fronts(stats, tables, backend=backend, device="cpu", **options)
    assert len(fronts) == len(tables)
    for costs, front in zip(tables, fronts, strict=True):
        alone = compute_front(stats, costs, backend=backend, device="cpu", **options)
        assert_same_front(front, alone)
        brute = Evaluated.of(SearchSpace(Problem(stats, costs), **options))
        assert_front_equals_brute(front, brute, rnd, rounds=3)


FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@FAST
@given(fleets())
def test_numba_fleet_equals_brute_force_and_single_searches(case):
    check_fleet(*case, backend="numba")


@settings(max_examples=15, deadline=None, derandomize=True)
@given(fleets())
def test_numpy_fleet_equals_brute_force_and_single_searches(case):
    check_fleet(*case, backend="numpy")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
@settings(max_examples=6, deadline=None, derandomize=True)
@given(fleets())
def test_torch_fleet_on_cpu_equals_brute_force_and_single_searches(case):
    check_fleet(*case, backend="torch")


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@settings(max_examples=10, deadline=None, derandomize=True)
@given(fleets(per_exit=True))
def test_per_exit_thresholds_fleet_equals_brute_force(case):
    check_fleet(*case, backend="numba")


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("hold", [1, Collector.HOLD])
def test_a_larger_fleet_on_many_threads_equals_single_searches(monkeypatch, hold):
    # many chunks and merges: the fronts must not depend on the order results arrive in
    monkeypatch.setattr(Collector, "HOLD", hold)
    stats = random_stats(num_samples=40, num_classes=4, positions=5, heads=3, seed=3)
    tables = [random_costs(stats, seed=s, integers=s % 2 == 0) for s in range(6)]
    options = {"max_exits": 3, "image_thresholds": [0.1, 0.3, 0.5, 0.7], "threads": 4}
    fronts = compute_fronts(stats, tables, **options)
    for costs, front in zip(tables, fronts, strict=True):
        assert_same_front(front, compute_front(stats, costs, **options))


def scaled(costs, factor):
    """The same table on a device ``factor`` times slower."""
    return dataclasses.replace(
        costs,
        segments={k: v * factor for k, v in costs.segments.items()},
        heads={k: v * factor for k, v in costs.heads.items()},
        policy={k: v * factor for k, v in costs.policy.items()},
    )


@pytest.fixture(scope="module")
def case():
    stats = random_stats(num_samples=15, num_classes=3, positions=3, heads=2, seed=4)
    return stats, random_costs(stats, seed=4)


OPTIONS = {"max_exits": 2, "image_thresholds": [0.3, 0.6]}


def test_search_fleet_answers_each_table_as_search_does(case):
    stats, fast = case
    tables = [fast, scaled(fast, 3.0), random_costs(stats, seed=9)]
    kw = {"objective": "min-cost", "max_drop": 0.02, "worst_budget": 40.0, **OPTIONS}
    answers = search_fleet(stats, tables, **kw)
    for costs, answer in zip(tables, answers, strict=True):
        try:
            want = search(stats, costs, **kw).to_json()
        except NoFeasibleConfiguration as exc:
            assert isinstance(answer, NoFeasibleConfiguration)
            assert str(answer) == str(exc)
            continue
        got = answer.to_json()
        assert got.pop("seconds") >= 0 and want.pop("seconds") >= 0
        assert got == want


def test_one_table_feasible_one_not(case):
    stats, fast = case
    slow = scaled(fast, 10.0)
    cheapest = compute_front(stats, fast, **OPTIONS).query("min-cost", max_drop=1.0)
    budget = 2 * cheapest.expected_cost  # below anything on the slow device
    answers = search_fleet(stats, [fast, slow], objective="max-accuracy", budget=budget, **OPTIONS)
    assert answers[0].expected_cost <= budget
    assert isinstance(answers[1], NoFeasibleConfiguration)
    with pytest.raises(NoFeasibleConfiguration) as alone:
        search(stats, slow, objective="max-accuracy", budget=budget, **OPTIONS)
    assert str(answers[1]) == str(alone.value)
    assert [point_key(p) for p in answers[1].alternatives] == [
        point_key(p) for p in alone.value.alternatives
    ]
    assert answers[1].front is not None and len(answers[1].front) > 0


def test_tables_that_price_other_parts_are_refused(case):
    stats, costs = case
    other = random_costs(random_stats(num_samples=5, positions=4, heads=2, seed=1), seed=1)
    with pytest.raises(ValueError, match="same parts"):
        compute_fronts(stats, [costs, other], **OPTIONS)
    renamed = dataclasses.replace(
        costs, heads={**costs.heads, "extra/head": 1.0}, policy={**costs.policy, "extra/head": 0.1}
    )
    with pytest.raises(ValueError, match="cost table 1 prices other heads"):
        compute_fronts(stats, [costs, renamed], **OPTIONS)
    reordered = dataclasses.replace(costs, segments=dict(reversed(costs.segments.items())))
    with pytest.raises(ValueError, match="segments"):
        compute_fronts(stats, [costs, reordered], **OPTIONS)
    with pytest.raises(ValueError, match="at least one"):
        compute_fronts(stats, [], **OPTIONS)


def test_mixed_units_are_refused_under_a_cost_budget_only(case):
    stats, ms = case
    gflops = random_costs(stats, unit="gflops", seed=4)
    with pytest.raises(ValueError, match="different units"):
        search_fleet(stats, [ms, gflops], objective="max-accuracy", budget=20.0, **OPTIONS)
    with pytest.raises(ValueError, match="different units"):
        search_fleet(
            stats, [ms, gflops], objective="min-cost", max_drop=0.1, worst_budget=30.0, **OPTIONS
        )
    fronts = compute_fronts(stats, [ms, gflops], **OPTIONS)
    assert [f.space["unit"] for f in fronts] == ["ms", "gflops"]
    answers = search_fleet(stats, [ms, gflops], objective="pareto", **OPTIONS)
    assert (
        answers[1].to_json()["front"]
        == search(stats, gflops, objective="pareto", **OPTIONS).to_json()["front"]
    )


def test_fleet_progress_counts_the_space_once(case):
    stats, costs = case
    seen = []
    fronts = compute_fronts(
        stats, [costs, scaled(costs, 2.0)], progress=lambda d, t: seen.append((d, t)), **OPTIONS
    )
    assert seen[-1] == (fronts[0].configs_evaluated, fronts[0].configs_evaluated)


def test_k_equals_one_is_the_single_search(case):
    stats, costs = case
    (front,) = compute_fronts(stats, [costs], **OPTIONS)
    assert_same_front(front, compute_front(stats, costs, **OPTIONS))
