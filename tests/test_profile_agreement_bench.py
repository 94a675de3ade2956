"""bench/profile_agreement.py: two profiles' answers, each priced by the other."""

from __future__ import annotations

import dataclasses

from bench.profile_agreement import agreement, random_accuracy
from mess.testing import random_costs, random_stats


def _stats():
    return random_stats(num_samples=40, num_classes=4, positions=3, heads=2, seed=3)


def test_one_table_twice_agrees_everywhere():
    stats = _stats()
    costs = random_costs(stats, seed=1)
    result = agreement(stats, [costs, costs], budgets=6, max_exits=2)
    assert result["answered"] == 6 and result["same_answer"] == 6
    assert result["within_tolerance"] == 6 and result["max_abs_miou_change_pp"] == 0
    assert result["parts"]["max_pct"] == 0


def test_another_table_is_priced_by_the_first():
    stats = _stats()
    first = random_costs(stats, seed=1)
    # every head 50 % dearer: answers move, and by the first table they are not the same cost
    second = dataclasses.replace(first, heads={k: 1.5 * v for k, v in first.heads.items()})
    result = agreement(stats, [first, second], budgets=8, max_exits=2, tolerance=0.02)
    assert result["parts"]["max_pct"] == 50.0
    assert result["within_tolerance"] < result["answered"]
    for row in result["rows"]:
        if row.get("feasible", True) and row["same"]:
            assert row["miou_change_pp"] == 0


def test_random_accuracy_keeps_the_exits_and_gives_a_richer_front():
    few = random_stats(num_samples=2, num_classes=4, positions=3, heads=2, seed=5)
    drawn = random_accuracy(few, 50)
    assert drawn.meta["exits"] == few.meta["exits"] and drawn.num_samples == 50
    costs = random_costs(few, seed=1)
    result = agreement(drawn, [costs, costs], budgets=30, max_exits=2)
    assert result["front_points"][0] > agreement(few, [costs, costs])["front_points"][0]
