"""mess.timings: a profile's precision summed up from the agent's report in its context."""

from __future__ import annotations

from mess.timings import precision_summary


def test_precision_summary_counts_each_timed_computation_once():
    context = {
        "rule": {"target": 0.02},
        "precision": {
            "a": {"halfwidth_pct": 1.0, "runs": 16},
            "a2": {"halfwidth_pct": 1.0, "runs": 16},  # shares a's runs
            "b": {"halfwidth_pct": 3.0, "runs": 24},
            "c": {"halfwidth_pct": None, "runs": 2},
        },
        "signatures": {"s1": ["a", "a2"], "s2": ["b"], "s3": ["c"]},
    }
    summary = precision_summary(context)
    assert summary["timed"] == 3 and summary["timed_runs"] == 42
    assert summary["within_target"] == "1/3" and summary["within"] == 1  # c: unknown, not within
    assert summary["halfwidth_median_pct"] == 2.0 and summary["halfwidth_max_pct"] == 3.0
    assert precision_summary({}) == {"timed": 0}
    assert "speed_spread_pct" not in summary  # an agent that did not probe its speed
    del context["signatures"]  # not grouped: every part was timed
    assert precision_summary(context)["timed"] == 4
    context["speed"] = {"medians_ms": [1.0, 1.05, 1.02], "spread_pct": 5.0}
    summary = precision_summary(context)
    assert summary["speed_probes"] == 3 and summary["speed_spread_pct"] == 5.0


def test_a_context_of_another_shape_is_summed_up_as_far_as_it_goes():
    """A stored context is what some agent sent: the dashboard must not fail on it."""
    odd = {
        "rule": "fast",
        "precision": {"a": "x", "b": {"halfwidth_pct": "1"}, "c": {"halfwidth_pct": 1.5}},
        "signatures": {"s": [], "t": "b", "u": ["c"]},
        "speed": {"spread_pct": "big"},
    }
    assert precision_summary(odd) == {
        "timed": 1,
        "timed_runs": 0,
        "halfwidth_median_pct": 1.5,
        "halfwidth_p90_pct": 1.5,
        "halfwidth_max_pct": 1.5,
    }
    assert precision_summary({"precision": [1, 2], "signatures": None}) == {"timed": 0}
