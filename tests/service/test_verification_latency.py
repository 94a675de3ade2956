"""The arithmetic of verification against hand-computed cases."""

from __future__ import annotations

import pytest

from service.verifications.latency import (
    Correction,
    combine,
    corrected_costs,
    fit,
    path_costs,
)
from tests.service.factories import costs_table, exits

POSITIONS = {e["id"]: e["position"] for e in exits()}
FIRST, SECOND = (e["id"] for e in exits())


def test_path_costs_follow_the_canonical_arithmetic() -> None:
    # segments 1, 1, final 2; heads 0.5 (final 1); policy 0.01
    costs = costs_table("ms")
    config = {
        "exits": [
            {"id": FIRST, "pixel_threshold": 0.5, "image_threshold": 0.3},
            {"id": SECOND, "pixel_threshold": 0.5, "image_threshold": 0.3},
        ],
        "terminal": "final",
    }
    assert path_costs(costs, POSITIONS, config) == pytest.approx([1.51, 3.02, 6.02])
    truncated = {"exits": config["exits"][:1], "terminal": SECOND}
    assert path_costs(costs, POSITIONS, truncated) == pytest.approx([1.51, 3.01])
    assert path_costs(costs, POSITIONS, {"exits": [], "terminal": "final"}) == [5.0]


def test_combine_weights_paths_by_exit_fractions() -> None:
    latency = combine([2.0, 5.0, 10.0], [0.5, 0.3, 0.2])
    assert latency.expected == pytest.approx(0.5 * 2 + 0.3 * 5 + 0.2 * 10)  # 4.5
    assert latency.worst == 10.0
    assert latency.p90 == 10.0  # 0.5 + 0.3 = 0.8 < 0.9: the 90th percentile image runs it all
    assert combine([2.0, 5.0, 10.0], [0.6, 0.3, 0.1]).p90 == 5.0  # 0.6 + 0.3 reaches 0.9
    assert combine([7.0], [1.0]).expected == 7.0
    with pytest.raises(ValueError, match="sum"):
        combine([1.0, 2.0], [0.5, 0.4])
    with pytest.raises(ValueError, match="path"):
        combine([1.0], [0.5, 0.5])


def test_worst_is_the_slowest_measured_path() -> None:
    # noise can put an early path above the terminal: a worst budget must hold for it too
    assert combine([4.0, 3.9], [0.5, 0.5]).worst == 4.0


def test_fit_recovers_a_scale_and_an_offset() -> None:
    predicted = [1.0, 2.0, 4.0, 8.0]
    assert fit(predicted, [1.3 * p for p in predicted]) == Correction(
        pytest.approx(1.3), pytest.approx(0.0, abs=1e-12)
    )
    got = fit(predicted, [1.2 * p + 0.5 for p in predicted])
    assert (got.scale, got.offset_ms) == (pytest.approx(1.2), pytest.approx(0.5))


def test_fit_keeps_scale_and_offset_non_negative() -> None:
    # measured falls with predicted: a negative slope is refused, a constant fits best
    got = fit([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    assert got.scale >= 0 and got.offset_ms >= 0
    assert (got.scale, got.offset_ms) == (0.0, pytest.approx(2.0))
    # a negative intercept is refused: through the origin instead
    got = fit([1.0, 2.0], [1.0, 3.0])
    assert got.offset_ms == 0.0 and got.scale == pytest.approx((1 + 6) / 5)


def test_fit_of_one_path_length_is_a_pure_scale() -> None:
    assert fit([4.0], [5.0]) == Correction(1.25, 0.0)
    assert fit([4.0, 4.0], [5.0, 6.0]) == Correction(pytest.approx(1.375), 0.0)


def test_corrected_costs_price_every_path_at_scale_times_path_plus_offset() -> None:
    costs = costs_table("ms")
    config = {
        "exits": [{"id": FIRST, "pixel_threshold": 0.5, "image_threshold": 0.3}],
        "terminal": "final",
    }
    correction = Correction(1.3, 0.25)
    before = path_costs(costs, POSITIONS, config)
    after = path_costs(corrected_costs(costs, correction), POSITIONS, config)
    assert after == pytest.approx([correction.apply(p) for p in before])
    assert costs["segments"]["layer1"] == 1.0  # the input table is not changed
