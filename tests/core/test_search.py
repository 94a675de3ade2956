"""Search semantics: the naive evaluator, tie rules, infeasibility, the front and results."""

import json

import numpy as np
import pytest

from mess.search import (
    Configuration,
    ExitRule,
    NoFeasibleConfiguration,
    ParetoFront,
    Problem,
    SearchSpace,
    compute_front,
    evaluate,
    resolve,
    search,
)
from mess.testing import random_costs, random_stats


@pytest.fixture(scope="module")
def case():
    stats = random_stats(num_samples=15, num_classes=3, positions=3, heads=2, seed=4)
    return stats, random_costs(stats, seed=4)


def _per_sample_reference(stats, costs, config):
    """Sample by sample, with plain Python: exit taken, costs and mIoU."""
    ids = stats.exit_ids
    reach = costs.cumulative()
    pos = {e["id"]: e["position"] for e in stats.exits}
    taken, paid = [], []
    for n in range(stats.num_samples):
        cost, out = 0.0, None
        for rule in config.exits:
            e = ids.index(rule.id)
            tp = stats.pixel_thresholds.index(rule.pixel_threshold)
            cost += costs.heads[rule.id] + costs.policy[rule.id]
            if np.float32(stats.confidence[n, e, tp]) >= np.float32(rule.image_threshold):
                out = (e, reach[pos[rule.id]] + cost)
                break
        if out is None:
            t = config.terminal
            where = reach["final"] if t == "final" else reach[pos[t]]
            out = (ids.index(t), where + cost + costs.heads[t])
        taken.append(out[0])
        paid.append(out[1])
    ious = []
    for c in range(stats.num_classes):
        i = sum(int(stats.intersection[n, taken[n], c]) for n in range(stats.num_samples))
        p = sum(int(stats.predicted[n, taken[n], c]) for n in range(stats.num_samples))
        u = p + int(stats.target[:, c].sum()) - i
        if u:
            ious.append(i / u)
    return taken, paid, sum(ious) / len(ious)


def test_evaluate_matches_a_sample_by_sample_reference(case):
    stats, costs = case
    ids = [e["id"] for e in stats.exits]
    config = Configuration(
        (ExitRule(ids[0], 0.7, 0.3), ExitRule(ids[3], 0.5, 0.6)), terminal=ids[5]
    )
    m = evaluate(stats, costs, config)
    taken, paid, miou = _per_sample_reference(stats, costs, config)
    assert m.miou == pytest.approx(miou, rel=1e-12)
    assert m.expected_cost == pytest.approx(np.mean(paid), rel=1e-12)
    assert m.worst_cost == pytest.approx(
        costs.reach(stats.exits[5]["position"])
        + sum(costs.heads[i] for i in (ids[0], ids[3], ids[5]))
        + costs.policy[ids[0]]
        + costs.policy[ids[3]],
        rel=1e-12,
    )
    assert m.p90_cost == pytest.approx(np.percentile(paid, 90), rel=1e-12)
    counts = np.bincount([{0: 0, 3: 1, 5: 2}[t] for t in taken], minlength=3)
    assert m.exit_fractions == pytest.approx(counts / stats.num_samples)


def test_evaluate_rejects_exits_out_of_depth_order(case):
    stats, costs = case
    ids = [e["id"] for e in stats.exits]
    with pytest.raises(ValueError, match="strictly increasing"):
        evaluate(stats, costs, Configuration((ExitRule(ids[2], 0.5, 0.5),), terminal=ids[3]))


def test_space_size_counts_every_configuration(case):
    stats, costs = case
    for per_exit in (False, True):
        space = SearchSpace(
            Problem(stats, costs),
            max_exits=2,
            image_thresholds=[0.2, 0.4],
            per_exit_thresholds=per_exit,
        )
        assert space.size() == sum(1 for _ in space.ranks())
    # 3 positions x 2 heads, shared thresholds, final only: 1 + 6*6 + 24*6 + 8*6
    space = SearchSpace(Problem(stats, costs), image_thresholds=[0.2, 0.4], truncation=False)
    assert space.size() == 1 + 6 * 6 + 12 * 6 + 8 * 6


def test_fewer_exits_win_ties():
    # every exit is a copy of the first: many configurations share metrics exactly
    stats = random_stats(num_samples=8, num_classes=2, positions=3, heads=1, seed=9)
    for arr in (stats.intersection, stats.predicted, stats.confidence):
        arr[:, 1:-1] = arr[:, :1]
    costs = random_costs(stats, seed=9, integers=True)
    for k in costs.segments:
        costs.segments[k] = 0.0 if k != "final" else 5.0
    for k in costs.policy:
        costs.policy[k] = 0.0
    for k in costs.heads:
        costs.heads[k] = 0.0 if k != "final" else 1.0
    result = search(
        stats, costs, objective="max-accuracy", budget=0.0, image_thresholds=[0.5], backend="numpy"
    )
    # all-free static exits tie with chains of them: the single first exit wins
    assert result.configuration == Configuration((), stats.exits[0]["id"])


def test_infeasible_budget_names_the_cheapest_alternative(case):
    stats, costs = case
    with pytest.raises(NoFeasibleConfiguration) as info:
        search(stats, costs, objective="max-accuracy", budget=-1.0, image_thresholds=[0.5])
    cheapest = info.value.alternatives[0]
    assert str(cheapest.configuration) in str(info.value)
    front = compute_front(stats, costs, image_thresholds=[0.5])
    assert cheapest.expected_cost == min(p.expected_cost for p in front.front_2d())


def test_min_cost_keeps_the_accuracy_of_the_original(case):
    stats, costs = case
    r = search(stats, costs, objective="min-cost", max_drop=0.0, image_thresholds=[0.3, 0.6])
    assert r.miou >= r.reference_miou
    assert r.expected_cost <= costs.original_cost()
    assert r.reference_miou == evaluate(stats, costs, Configuration()).miou
    with pytest.raises(NoFeasibleConfiguration) as info:
        search(stats, costs, objective="min-cost", max_drop=-1.0, image_thresholds=[0.5])
    best = info.value.alternatives[0]
    assert best.miou == max(p.miou for p in r.pareto.front_2d())


def test_worst_budget_bounds_the_terminal_path(case):
    stats, costs = case
    free = search(stats, costs, objective="max-accuracy", budget=1e9, image_thresholds=[0.5])
    capped = search(
        stats,
        costs,
        objective="max-accuracy",
        budget=1e9,
        worst_budget=free.worst_cost - 1e-9,
        image_thresholds=[0.5],
    )
    assert capped.worst_cost < free.worst_cost
    assert capped.miou <= free.miou


def test_result_json_has_exactly_the_documented_keys(case):
    stats, costs = case
    keys = {
        "objective",
        "configuration",
        "miou",
        "expected_cost",
        "worst_cost",
        "p90_cost",
        "exit_fractions",
        "reference_miou",
        "configs_evaluated",
        "seconds",
    }
    r = search(stats, costs, objective="max-accuracy", budget=20.0, image_thresholds=[0.5])
    out = json.loads(json.dumps(r.to_json()))
    assert set(out) == keys
    assert set(out["configuration"]) == {"exits", "terminal"}
    assert len(out["exit_fractions"]) == len(out["configuration"]["exits"]) + 1
    assert sum(out["exit_fractions"]) == pytest.approx(1.0)
    p = search(stats, costs, objective="pareto", image_thresholds=[0.5]).to_json()
    assert set(p) == keys | {"front"}
    costs_on_front = [f["expected_cost"] for f in p["front"]]
    mious = [f["miou"] for f in p["front"]]
    assert costs_on_front == sorted(costs_on_front) and mious == sorted(mious)


def test_configuration_json_round_trips():
    c = Configuration((ExitRule("a/x", 0.5, 0.25), ExitRule("b/y", 0.7, 0.9)), terminal="final")
    assert Configuration.from_json(json.loads(json.dumps(c.to_json()))) == c
    with pytest.raises(ValueError, match="invalid configuration"):
        Configuration.from_json({"exits": [{"id": "a"}]})


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_a_saved_front_answers_queries_like_the_original(case, tmp_path, suffix):
    stats, costs = case
    front = compute_front(stats, costs, image_thresholds=[0.3, 0.6])
    front.save(tmp_path / f"front{suffix}")
    back = ParetoFront.load(tmp_path / f"front{suffix}")
    for budget in (8.0, 12.0, 30.0):
        assert back.query("max-accuracy", budget) == front.query("max-accuracy", budget)
    assert back.query("min-cost", max_drop=0.01) == front.query("min-cost", max_drop=0.01)
    assert back.front_2d() == front.front_2d()
    with pytest.raises(ValueError, match="not a front"):
        ParetoFront.load(tmp_path / "missing.npz")


def test_progress_reaches_the_total(case):
    stats, costs = case
    seen = []
    r = search(
        stats,
        costs,
        objective="pareto",
        image_thresholds=[0.5],
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (r.configs_evaluated, r.configs_evaluated)
    assert all(a <= b for (a, _), (b, _) in zip(seen, seen[1:], strict=False))


def test_an_exit_subset_limits_the_search(case):
    stats, costs = case
    allowed = [stats.exits[1]["id"], stats.exits[4]["id"]]
    r = search(stats, costs, objective="pareto", image_thresholds=[0.5], exits=allowed)
    used = {rule.id for p in r.front for rule in p.configuration.exits}
    used |= {p.configuration.terminal for p in r.front}
    assert used <= set(allowed) | {"final"}


def test_device_auto_resolves_to_the_cpu_here():
    device, backend = resolve("auto", "numpy")
    assert (device, backend) == ("cpu", "numpy")
    with pytest.raises(ValueError, match="CPU only"):
        resolve("cuda", "numba")
    with pytest.raises(ValueError, match="backend"):
        resolve("cpu", "fortran")


@pytest.mark.parametrize("have_numba", [True, False])
def test_auto_stays_on_the_cpu_even_with_a_gpu(monkeypatch, have_numba):
    """The torch engine has not been measured faster than numba: only an explicit ask runs it."""
    monkeypatch.setattr("mess.search.api.cuda_available", lambda: True)
    monkeypatch.setattr("mess.search.api.HAVE_NUMBA", have_numba)
    cpu = "numba" if have_numba else "numpy"
    assert resolve() == ("cpu", cpu)
    assert resolve("cpu") == ("cpu", cpu)
    assert resolve("cuda") == ("cuda", "torch")
    assert resolve("auto", "torch") == ("cuda", "torch")
    assert resolve("cpu", "torch") == ("cpu", "torch")
    monkeypatch.setattr("mess.search.api.cuda_available", lambda: False)
    assert resolve("auto", "torch") == ("cpu", "torch")
    if not have_numba:
        with pytest.raises(ValueError, match="needs numba"):
            resolve("auto", "numba")


def test_missing_objective_arguments_are_rejected(case):
    stats, costs = case
    with pytest.raises(ValueError, match="budget"):
        search(stats, costs, objective="max-accuracy")
    with pytest.raises(ValueError, match="max_drop"):
        search(stats, costs, objective="min-cost")
    with pytest.raises(ValueError, match="objective"):
        search(stats, costs, objective="fastest")  # type: ignore[arg-type]


@pytest.mark.parametrize("per_exit", [False, True])
@pytest.mark.parametrize("truncation", [False, True])
def test_tails_of_every_configuration_are_the_naive_evaluators(case, per_exit, truncation):
    stats, costs = case
    space = SearchSpace(
        Problem(stats, costs),
        max_exits=2 if per_exit else 3,
        image_thresholds=[0.0, 0.4, 0.7],
        per_exit_thresholds=per_exit,
        truncation=truncation,
    )
    ranks = list(space.ranks())
    rows = np.full((len(ranks), space.max_exits + 2), -1, dtype=np.int64)
    for i, r in enumerate(ranks):
        rows[i, : len(r) - 1] = r[:-1]
        rows[i, -1] = r[-1]
    p90, counts = space.tails(rows, block=97)
    for i, r in enumerate(ranks):
        m = space.problem.evaluate(space.configuration(r))
        assert p90[i] == m.p90_cost
        assert counts[i].tolist() == m.counts + [-1] * (space.max_exits + 1 - len(m.counts))
