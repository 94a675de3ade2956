"""``bench.headline_stats``: the paired bootstrap against hand-computed intervals, the split
balance flag and the regime checks, on small synthetic inputs (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.headline_stats import (
    Paired,
    paired_bootstrap,
    per_image_latency,
    regime_checks,
    resampled_miou,
    split_balance,
)
from mess.stats import miou_from_sums


def _pair(inter, union, ms, base_inter, base_union, base_ms) -> Paired:
    def a(x):
        return np.asarray(x, dtype=np.int64)

    return Paired(
        a(inter),
        a(union),
        np.asarray(ms, float),
        a(base_inter),
        a(base_union),
        np.asarray(base_ms, float),
    )


# One class, two images (a, b). Tailored: I/U a 1/2, b 3/4, ms a 1, b 3. Original: I/U a 2/2,
# b 1/4, ms 2 and 2. The four equally likely resamples {aa, ab, ba, bb}:
#   aa: mIoU 1/2 vs 1 -> -50 pp, speedup 2/1 = 2
#   ab, ba: 4/6 vs 3/6 -> +16.67 pp, speedup 4/4 = 1
#   bb: 3/4 vs 1/4 -> +50 pp, speedup 2/3
# Each extreme has probability 1/4 > 2.5 %, so the 95 % percentile interval is exactly
# [-50, +50] pp and [2/3, 2].
HAND = _pair([[1], [3]], [[2], [4]], [1, 3], [[2], [1]], [[2], [4]], [2, 2])


def test_the_interval_of_a_hand_computed_case() -> None:
    out = paired_bootstrap([HAND], resamples=4000, seed=1)
    assert out["delta_pp"] == pytest.approx(100 * (4 / 6 - 3 / 6))
    assert out["speedup"] == pytest.approx(1.0)
    assert out["delta_pp_ci95"] == pytest.approx([-50.0, 50.0])
    assert out["speedup_ci95"] == pytest.approx([2 / 3, 2.0])


def test_identical_seeds_pool_to_the_same_interval_and_a_uniform_change_has_no_width() -> None:
    one = paired_bootstrap([HAND], resamples=500, seed=3)
    two = paired_bootstrap([HAND, HAND], resamples=500, seed=3)
    assert two == one
    # twice as fast on every image, the same predictions: every resample agrees
    same = _pair([[1], [3]], [[2], [4]], [1, 1.5], [[1], [3]], [[2], [4]], [2, 3])
    out = paired_bootstrap([same], resamples=200)
    assert out["delta_pp_ci95"] == [0.0, 0.0]
    assert out["speedup_ci95"] == pytest.approx([2.0, 2.0])


def test_the_bootstrap_is_reproducible_by_seed_and_covers_its_estimate() -> None:
    rng = np.random.default_rng(0)
    n, c = 40, 3
    union = rng.integers(5, 20, size=(n, c))
    pairs = [
        Paired(
            rng.integers(0, 5, size=(n, c)),
            union,
            rng.uniform(1, 2, n),
            rng.integers(0, 5, size=(n, c)),
            union,
            rng.uniform(2, 3, n),
        )
        for _ in range(2)
    ]
    a = paired_bootstrap(pairs, resamples=300, seed=7)
    assert paired_bootstrap(pairs, resamples=300, seed=7) == a
    assert paired_bootstrap(pairs, resamples=300, seed=8) != a
    lo, hi = a["delta_pp_ci95"]
    assert lo < a["delta_pp"] < hi
    lo, hi = a["speedup_ci95"]
    assert lo < a["speedup"] < hi
    # the point estimates are the means over seeds of the usual figures
    delta = [
        100
        * (
            miou_from_sums(p.intersection.sum(0), p.union.sum(0))
            - miou_from_sums(p.base_intersection.sum(0), p.base_union.sum(0))
        )
        for p in pairs
    ]
    assert a["delta_pp"] == pytest.approx(np.mean(delta))
    speedup = [p.base_latency_ms.mean() / p.latency_ms.mean() for p in pairs]
    assert a["speedup"] == pytest.approx(np.mean(speedup))


def test_resampled_miou_leaves_out_empty_classes_like_the_stats() -> None:
    inter = np.array([[1, 0, 0], [2, 0, 1]])
    union = np.array([[2, 0, 1], [4, 0, 3]])
    weights = np.array([[1.0, 1.0], [2.0, 0.0]])
    got = resampled_miou(weights, inter, union)
    assert got[0] == pytest.approx(miou_from_sums(inter.sum(0), union.sum(0)))
    assert got[1] == pytest.approx(miou_from_sums(2 * inter[0], 2 * union[0]))


def test_seeds_must_pair_the_same_images() -> None:
    other = _pair([[1]], [[2]], [1], [[1]], [[2]], [1])
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap([HAND, other])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([])


def test_per_image_latency_averages_the_rounds() -> None:
    assert per_image_latency([1, 2, 3, 3, 4, 5], 3).tolist() == [2, 3, 4]
    with pytest.raises(ValueError, match="whole rounds"):
        per_image_latency([1, 2, 3], 2)


def test_split_balance_flags_means_further_apart_than_their_standard_error() -> None:
    out = split_balance({"train": [0.2, 0.4, 0.6], "calibration": [0.3, 0.4, 0.5]})
    train = out["difficulty"]["train"]
    assert train["images"] == 3 and train["mean"] == pytest.approx(0.4)
    assert train["std"] == pytest.approx(0.2) and train["sem"] == pytest.approx(0.2 / math.sqrt(3))
    assert out["balanced"] and out["unbalanced"] == []
    shifted = split_balance(
        {"train": [0.2, 0.4, 0.6], "calibration": [0.3, 0.4, 0.5], "test": [0.8, 0.9, 1.0]}
    )
    assert not shifted["balanced"]
    assert shifted["unbalanced"] == [["train", "test"], ["calibration", "test"]]


def _exits(heads: list[str], positions: int) -> list[dict]:
    return [
        {"id": f"p{i}/{h}", "position": f"p{i}", "position_index": i, "head": h}
        for h in heads
        for i in range(positions)
    ]


def test_regime_checks_flag_a_shallow_exit_above_final_and_a_drop_with_depth() -> None:
    exits = _exits(["fcn", "dlv3"], 4)
    # fcn rises with depth; dlv3 falls at p2; dlv3 at p1 (first half) beats final by 2 pp
    mious = [0.40, 0.45, 0.50, 0.55, 0.50, 0.62, 0.58, 0.61]
    out = regime_checks(
        exits=exits,
        mious=mious,
        final_miou=0.60,
        convergence={"budget_miou": 0.600, "double_miou": 0.603},
        original_steps=40,
        head_steps=80,
    )
    assert out["split"] == "calibration"
    assert out["final_minus_best_shallow_pp"] == pytest.approx(-2.0)
    assert not out["final_beats_shallow"]
    assert out["depth"]["fcn"]["drops"] == [] and out["depth"]["dlv3"]["drops"] == ["p2"]
    assert out["depth"]["fcn"]["miou"] == mious[:4] and not out["depth_monotone"]
    assert out["convergence_delta_pp"] == pytest.approx(0.3) and out["converged"]
    assert (out["original_steps"], out["head_steps"], out["enough_steps"]) == (40, 80, False)


def test_regime_checks_not_converged_or_not_measured() -> None:
    exits = _exits(["fcn"], 2)
    common = dict(exits=exits, mious=[0.3, 0.4], final_miou=0.5, original_steps=8, head_steps=8)
    under = regime_checks(convergence={"budget_miou": 0.30, "double_miou": 0.36}, **common)
    assert not under["converged"] and under["convergence_delta_pp"] == pytest.approx(6.0)
    assert under["final_minus_best_shallow_pp"] == pytest.approx(20.0)  # p0 alone is shallow
    assert under["final_beats_shallow"] and under["depth_monotone"] and under["enough_steps"]
    worse = regime_checks(convergence={"budget_miou": 0.36, "double_miou": 0.35}, **common)
    assert not worse["converged"]  # a drop counts as much as a gain
    unknown = regime_checks(convergence=None, **common)
    assert unknown["convergence_delta_pp"] is None and not unknown["converged"]


def _json_row(setting: str, mode: str, miou: float, speedup: float, change: float) -> dict:
    return {
        "setting": setting,
        "mode": mode,
        "miou": miou,
        "gflops": 1.0,
        "latency_ms": 10 / speedup,
        "latency_p90_ms": 12 / speedup,
        "sum_of_parts_ms": 10 / speedup,
        "speedup": speedup,
        "miou_change_pp": change,
        "exit_fractions": [1.0],
        "configuration": {"exits": [], "terminal": setting},
        "predicted": {},
    }


def test_rows_combine_seeds_into_means_stds_intervals_and_the_static_cut() -> None:
    from bench.headline_select import combine_rows

    seed0 = [
        _json_row("original", "original", 0.50, 1.0, 0.0),
        _json_row("min-cost@1pp", "dynamic", 0.49, 3.0, -1.0),
        _json_row("min-cost@1pp/static", "static", 0.48, 2.0, -2.0),
    ]
    seed1 = [
        _json_row("original", "original", 0.52, 1.0, 0.0),
        _json_row("min-cost@1pp", "dynamic", 0.52, 5.0, 0.0),
        _json_row("min-cost@1pp/static", "static", 0.50, 2.0, -2.0),
    ]
    intervals = [
        {"delta_pp_ci95": [0.0, 0.0], "speedup_ci95": [1.0, 1.0]},
        {"delta_pp_ci95": [-1.5, 0.5], "speedup_ci95": [3.5, 4.5]},
        {"delta_pp_ci95": [-2.5, -1.5], "speedup_ci95": [1.9, 2.1]},
    ]
    rows = combine_rows([seed0, seed1], intervals, [0, 1])
    original, dynamic, static = rows
    assert dynamic["speedup"] == 4.0 and dynamic["speedup_std"] == pytest.approx(math.sqrt(2))
    assert dynamic["delta_pp"] == dynamic["miou_change_pp"] == -0.5
    assert dynamic["delta_pp_std"] == pytest.approx(math.sqrt(0.5))
    assert dynamic["miou"] == pytest.approx(0.505)
    assert dynamic["delta_pp_ci95"] == [-1.5, 0.5] and dynamic["speedup_ci95"] == [3.5, 4.5]
    assert (dynamic["static_speedup"], dynamic["static_delta_pp"]) == (2.0, -2.0)
    assert (static["static_speedup"], static["static_delta_pp"]) == (2.0, -2.0)
    assert (original["static_speedup"], original["static_delta_pp"]) == (1.0, 0.0)
    assert [s["seed"] for s in dynamic["per_seed"]] == [0, 1]
    assert dynamic["per_seed"][1]["speedup"] == 5.0
    assert dynamic["configuration"] == seed0[1]["configuration"]  # the first seed's
    with pytest.raises(ValueError, match="same order"):
        combine_rows([seed0, seed1[::-1]], intervals, [0, 1])


def test_the_regime_of_several_seeds_holds_only_when_every_seed_passes() -> None:
    pytest.importorskip("torch")  # bench.headline imports the pipeline
    from bench.headline import combine_regimes

    exits = _exits(["fcn"], 2)
    common = dict(exits=exits, mious=[0.3, 0.4], final_miou=0.5, original_steps=8, head_steps=4)
    good = regime_checks(convergence={"budget_miou": 0.5, "double_miou": 0.501}, **common)
    bad = regime_checks(convergence={"budget_miou": 0.5, "double_miou": 0.52}, **common)
    both = combine_regimes([good, bad])
    assert not both["converged"] and both["per_seed"] == [good, bad]
    assert both["convergence_delta_pp"] == pytest.approx((0.1 + 2.0) / 2)
    assert both["final_minus_best_shallow_pp"] == pytest.approx(20.0)
    assert combine_regimes([good, good])["converged"]
    unknown = regime_checks(convergence=None, **common)
    assert combine_regimes([good, unknown])["convergence_delta_pp"] is None
