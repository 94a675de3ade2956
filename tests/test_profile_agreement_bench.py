"""bench/profile_agreement.py: two profiles' answers, each priced by the other."""

from __future__ import annotations

import dataclasses

from bench.profile_agreement import agreement
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
