"""Sharded search: the shards' fronts merge into exactly the unsharded front, in every engine."""

import importlib.util

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mess.search import (
    NoFeasibleConfiguration,
    Problem,
    SearchSpace,
    Shard,
    compute_front,
    compute_fronts,
    merge_fleet,
    merge_fronts,
    search_fleet,
)
from mess.search.api import answer_fronts
from mess.search.brute import Evaluated
from mess.search.kernels import HAVE_NUMBA
from mess.search.shards import assign
from mess.testing import random_costs, random_stats
from tests.core.brute_checks import assert_front_equals_brute, point_key

GRID = [0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9]
ARRAYS = ("exp", "worst", "miou", "p90", "ranks", "counts")
# 1, a few, and more shards than small spaces have first-level subtrees (empty shards)
COUNTS = (1, 2, 3, 16)
HAVE_TORCH = importlib.util.find_spec("torch") is not None


@st.composite
def cases(draw, per_exit=None, tables=None):
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
    k = draw(st.integers(1, 3)) if tables is None else tables
    # integer costs make exact ties in expected cost: the tie order must survive the merge
    costs = [
        random_costs(stats, seed=seed + 101 * i, integers=draw(st.booleans())) for i in range(k)
    ]
    per = draw(st.booleans()) if per_exit is None else per_exit
    options = {
        "max_exits": draw(st.integers(0, 2 if per else 3)),
        "image_thresholds": sorted(draw(st.sets(st.sampled_from(GRID), min_size=1, max_size=3))),
        "per_exit_thresholds": per,
        "truncation": draw(st.booleans()),
    }
    return stats, costs, options, draw(st.randoms(use_true_random=False))


def assert_same_front(a, b):
    """Bit for bit on the stored arrays (point order included), and the same header."""
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name
    assert a.space == b.space
    assert a.reference_miou == b.reference_miou
    assert a.configs_evaluated == b.configs_evaluated
    assert a.shard is None and b.shard is None


def check_sharded(stats, costs, options, rnd, backend):
    whole = compute_fronts(stats, costs, backend=backend, device="cpu", **options)
    size = SearchSpace(Problem(stats, costs[0]), **options).size()
    for count in COUNTS:
        parts = [
            compute_fronts(
                stats, costs, backend=backend, device="cpu", shard=Shard(i, count), **options
            )
            for i in range(count)
        ]
        for i, part in enumerate(parts):
            for f in part:
                assert {k: f.shard[k] for k in ("index", "count", "space_size")} == {
                    "index": i,
                    "count": count,
                    "space_size": size,
                }
        assert sum(part[0].configs_evaluated for part in parts) == size
        if count == COUNTS[-1] and not options["per_exit_thresholds"]:
            # at most 2 pixel thresholds x 6 exits + the base: some shards hold nothing
            assert any(part[0].configs_evaluated == 0 for part in parts)
        # shards merged in any order give the same front
        rnd.shuffle(parts)
        merged = merge_fleet(parts)
        for got, want in zip(merged, whole, strict=True):
            assert_same_front(got, want)
    for table, front in zip(costs, merged, strict=True):
        brute = Evaluated.of(SearchSpace(Problem(stats, table), **options))
        assert_front_equals_brute(front, brute, rnd, rounds=2)


FAST = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@FAST
@given(cases())
def test_numba_shards_merge_into_the_unsharded_front_and_the_brute_force(case):
    check_sharded(*case, backend="numba")


@settings(max_examples=12, deadline=None, derandomize=True)
@given(cases())
def test_numpy_shards_merge_into_the_unsharded_front_and_the_brute_force(case):
    check_sharded(*case, backend="numpy")


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
@settings(max_examples=5, deadline=None, derandomize=True)
@given(cases())
def test_torch_shards_on_cpu_merge_into_the_unsharded_front_and_the_brute_force(case):
    check_sharded(*case, backend="torch")


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@settings(max_examples=8, deadline=None, derandomize=True)
@given(cases(per_exit=True, tables=2))
def test_per_exit_threshold_fleet_shards_merge_exactly(case):
    check_sharded(*case, backend="numba")


@pytest.fixture(scope="module")
def medium():
    stats = random_stats(num_samples=30, num_classes=4, positions=5, heads=3, seed=11)
    costs = [random_costs(stats, seed=s, integers=s == 2) for s in (1, 2)]
    options = {"max_exits": 3, "image_thresholds": [0.1, 0.4, 0.7]}
    return stats, costs, options


def test_a_larger_space_split_many_ways_merges_exactly_and_evenly(medium):
    stats, costs, options = medium
    whole = compute_fronts(stats, costs, **options)
    for count in (2, 5, 16):
        parts = [
            compute_fronts(stats, costs, shard=Shard(i, count), **options) for i in range(count)
        ]
        for got, want in zip(merge_fleet(parts), whole, strict=True):
            assert_same_front(got, want)
        sizes = [p[0].configs_evaluated for p in parts]
        # the greedy balance: no shard exceeds an even share by more than one subtree
        assert max(sizes) - min(sizes) <= max(sizes) // 2, sizes


def test_merged_shards_answer_every_query_as_the_unsharded_search(medium):
    stats, costs, options = medium
    parts = [compute_fronts(stats, costs, shard=Shard(i, 3), **options) for i in range(3)]
    merged = merge_fleet(parts)
    cheapest = min(f.exp.min() for f in merged)
    queries = [
        {"objective": "max-accuracy", "budget": cheapest / 2},  # infeasible everywhere
        {"objective": "max-accuracy", "budget": float(np.median(merged[0].exp))},
        {"objective": "min-cost", "max_drop": -0.5},  # infeasible: above the reference
        {"objective": "min-cost", "max_drop": 0.01, "worst_budget": float(merged[1].worst[0])},
        {"objective": "pareto"},
    ]
    for q in queries:
        want = search_fleet(stats, costs, **q, **options)
        got = answer_fronts(merged, **q)
        for a, b in zip(got, want, strict=True):
            assert isinstance(a, NoFeasibleConfiguration) == isinstance(b, NoFeasibleConfiguration)
            if isinstance(a, NoFeasibleConfiguration):
                assert str(a) == str(b)
                assert [point_key(p) for p in a.alternatives] == [
                    point_key(p) for p in b.alternatives
                ]
            else:
                ja, jb = a.to_json(), b.to_json()
                ja.pop("seconds"), jb.pop("seconds")
                assert ja == jb


def test_the_space_without_early_exits_lives_in_shard_zero():
    stats = random_stats(num_samples=8, num_classes=2, positions=2, heads=2, seed=5)
    costs = random_costs(stats, seed=5)
    options = {"max_exits": 0, "image_thresholds": [0.5]}
    parts = [compute_front(stats, costs, shard=Shard(i, 3), **options) for i in range(3)]
    assert [p.configs_evaluated for p in parts] == [parts[0].configs_evaluated, 0, 0]
    assert len(parts[1]) == len(parts[2]) == 0
    assert_same_front(merge_fronts(parts), compute_front(stats, costs, **options))


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_a_shard_front_keeps_its_record_through_a_file(tmp_path, suffix, medium):
    stats, costs, options = medium
    parts = [compute_front(stats, costs[0], shard=Shard(i, 2), **options) for i in range(2)]
    loaded = []
    for i, part in enumerate(parts):
        part.save(tmp_path / f"{i}{suffix}")
        loaded.append(type(part).load(tmp_path / f"{i}{suffix}"))
        assert loaded[-1].shard == part.shard
    merged = merge_fronts(loaded)
    assert_same_front(merged, compute_front(stats, costs[0], **options))
    merged.save(tmp_path / f"m{suffix}")
    assert type(merged).load(tmp_path / f"m{suffix}").shard is None


# the shard and the merge refuse what cannot be exact --------------------------------------


@pytest.mark.parametrize(
    ("index", "count", "error"),
    [
        (0, 0, ValueError),
        (0, -2, ValueError),
        (3, 3, ValueError),
        (-1, 2, ValueError),
        (1.0, 2, TypeError),
        (True, 2, TypeError),
        ("0", 2, TypeError),
    ],
)
def test_an_invalid_shard_is_refused(index, count, error):
    with pytest.raises(error, match="shard"):
        Shard(index, count)


def test_shard_parses_i_over_n():
    assert Shard.parse("2/5") == Shard(2, 5)
    assert str(Shard(2, 5)) == "2/5"
    for bad in ("2", "a/5", "2/", "5/5", "0/0", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)


def test_compute_front_refuses_a_shard_that_is_no_shard(medium):
    stats, costs, options = medium
    with pytest.raises(TypeError, match="Shard"):
        compute_front(stats, costs[0], shard="0/2", **options)  # type: ignore[arg-type]


def test_assign_deals_every_unit_once_deterministically_and_evenly():
    rng = np.random.default_rng(0)
    w = rng.integers(1, 1000, size=200)
    owner = assign(w, 7)
    assert owner.tolist() == assign(w, 7).tolist()
    loads = np.bincount(owner, weights=w, minlength=7)
    assert loads.sum() == w.sum()
    assert loads.max() - loads.min() <= w.max()
    assert assign([5, 3], 4).tolist() == [0, 1]  # more shards than units: some get nothing
    assert assign(w, 1).tolist() == [0] * 200
    with pytest.raises(ValueError, match="at least 1"):
        assign(w, 0)


@pytest.fixture(scope="module")
def split(medium):
    stats, costs, options = medium
    return [compute_front(stats, costs[0], shard=Shard(i, 3), **options) for i in range(3)]


def test_merge_refuses_a_missing_shard(split):
    with pytest.raises(ValueError, match=r"missing shard\(s\) 1/3"):
        merge_fronts([split[0], split[2]])


def test_merge_refuses_a_shard_given_twice(split):
    with pytest.raises(ValueError, match="more than once"):
        merge_fronts([split[0], split[1], split[1], split[2]])


def test_merge_refuses_shards_of_different_splits(split, medium):
    stats, costs, options = medium
    other = compute_front(stats, costs[0], shard=Shard(1, 2), **options)
    with pytest.raises(ValueError, match="different splits"):
        merge_fronts([split[0], other, split[2]])


def test_merge_refuses_shards_of_another_space(split, medium):
    stats, costs, options = medium
    other = compute_front(stats, costs[0], shard=Shard(1, 3), max_exits=2)
    with pytest.raises(ValueError, match="another search space"):
        merge_fronts([split[0], other, split[2]])
    other_stats = random_stats(num_samples=30, num_classes=4, positions=5, heads=3, seed=12)
    foreign = compute_front(
        other_stats, random_costs(other_stats, seed=1), shard=Shard(1, 3), **options
    )
    with pytest.raises(ValueError, match="other statistics|another search space"):
        merge_fronts([split[0], foreign, split[2]])


def test_merge_refuses_shards_of_another_cost_table_in_the_same_unit(split, medium):
    stats, costs, options = medium
    assert costs[0].unit == costs[1].unit
    other = compute_front(stats, costs[1], shard=Shard(1, 3), **options)
    with pytest.raises(ValueError, match="other statistics or costs"):
        merge_fronts([split[0], other, split[2]])


def test_merge_refuses_a_whole_front_and_nothing(split, medium):
    stats, costs, options = medium
    with pytest.raises(ValueError, match="not a shard's front"):
        merge_fronts([compute_front(stats, costs[0], **options)])
    with pytest.raises(ValueError, match="at least one"):
        merge_fronts([])


def test_merge_fleet_refuses_shards_with_other_tables(medium):
    stats, costs, options = medium
    a = compute_fronts(stats, costs, shard=Shard(0, 2), **options)
    b = compute_fronts(stats, costs[:1], shard=Shard(1, 2), **options)
    with pytest.raises(ValueError, match="holds 1 front"):
        merge_fleet([a, b])
