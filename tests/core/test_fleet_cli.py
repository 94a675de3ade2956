"""``mess search`` with several ``--costs``: one JSON entry, table or front file per table."""

import dataclasses
import json
import sys

import pytest
from typer.testing import CliRunner

from mess.cli import app, main
from mess.cli._app import UserError
from mess.costs import save_costs
from mess.search import ParetoFront, compute_front
from mess.stats import save_stats
from mess.testing import random_costs, random_stats

GRID = "0.2,0.5"


def scaled(costs, factor):
    return dataclasses.replace(
        costs,
        segments={k: v * factor for k, v in costs.segments.items()},
        heads={k: v * factor for k, v in costs.heads.items()},
        policy={k: v * factor for k, v in costs.policy.items()},
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fleet")
    stats = random_stats(num_samples=12, num_classes=3, positions=3, heads=2, seed=6)
    fast = random_costs(stats, seed=6)
    save_stats(stats, d / "s.npz")
    save_costs(fast, d / "phone.json")
    save_costs(scaled(fast, 10.0), d / "board.json")
    save_costs(random_costs(stats, seed=8), d / "server.json")
    save_costs(random_costs(stats, unit="gflops", seed=6), d / "flops.json")
    cheapest = compute_front(stats, fast, max_exits=2, image_thresholds=[0.2, 0.5]).query(
        "min-cost", max_drop=1.0
    )
    # feasible on the phone, on nothing ten times slower
    return stats, d, 2 * cheapest.expected_cost


def _args(d, tables, *extra):
    costs = [a for t in tables for a in ("--costs", str(d / f"{t}.json"))]
    return ["search", "--stats", str(d / "s.npz"), *costs, "--image-thresholds", GRID, *extra]


def _run(args):
    return CliRunner().invoke(app, args)


def _without_seconds(obj):
    return {k: v for k, v in obj.items() if k != "seconds"}


def test_json_array_holds_each_tables_own_answer_in_order(files):
    _, d, _ = files
    extra = ("--objective", "min-cost", "--max-drop", "0.02", "--max-exits", "2", "--json")
    result = _run(_args(d, ["server", "phone", "board"], *extra))
    assert result.exit_code == 0, result.output
    fleet = json.loads(result.output)
    assert isinstance(fleet, list) and len(fleet) == 3
    for table, entry in zip(["server", "phone", "board"], fleet, strict=True):
        alone = _run(_args(d, [table], *extra))
        assert alone.exit_code == 0, alone.output
        assert _without_seconds(entry) == _without_seconds(json.loads(alone.output))


def test_an_infeasible_table_is_an_entry_not_a_failure(files, monkeypatch, capsys):
    _, d, budget = files
    extra = ("--objective", "max-accuracy", "--budget", str(budget), "--max-exits", "2", "--json")
    result = _run(_args(d, ["phone", "board"], *extra))
    assert result.exit_code == 0, result.output
    phone, board = json.loads(result.output)
    assert phone["expected_cost"] <= budget and "feasible" not in phone
    assert board["feasible"] is False and board["closest"]
    # the single-table run says the same on stderr, with exit code 3
    monkeypatch.setattr(sys, "argv", ["mess", *_args(d, ["board"], *extra)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert err == f"error: {board['message']}\n"
    assert "Closest feasible" in board["message"]


def test_exit_3_only_when_no_table_has_an_answer(files, monkeypatch, capsys):
    _, d, _ = files
    extra = ("--objective", "max-accuracy", "--budget", "0.001", "--json")
    monkeypatch.setattr(sys, "argv", ["mess", *_args(d, ["phone", "board"], *extra)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 3
    out, err = capsys.readouterr()
    entries = json.loads(out)
    assert [e["feasible"] for e in entries] == [False, False]
    assert err.startswith("error: no cost table has a feasible configuration")


def test_front_out_is_a_folder_of_one_front_per_table(files, tmp_path):
    stats, d, budget = files
    folder = tmp_path / "fronts"
    extra = ("--objective", "max-accuracy", "--budget", str(budget), "--max-exits", "2")
    result = _run(_args(d, ["phone", "board"], *extra, "--front-out", str(folder)))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["0-phone.npz", "1-board.npz"]
    for name, table in [("0-phone.npz", "phone"), ("1-board.npz", "board")]:
        alone = tmp_path / f"{table}.npz"
        single = _run(
            _args(
                d, [table], "--objective", "pareto", "--max-exits", "2", "--front-out", str(alone)
            )
        )
        assert single.exit_code == 0, single.output
        a, b = ParetoFront.load(folder / name), ParetoFront.load(alone)
        for field in ("exp", "worst", "miou", "p90", "ranks", "counts"):
            assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    # a file where a folder is needed
    result = _run(_args(d, ["phone", "board"], *extra, "--front-out", str(alone)))
    assert isinstance(result.exception, UserError) and "folder" in str(result.exception)


def test_a_table_per_cost_table_without_json(files):
    _, d, budget = files
    extra = ("--objective", "max-accuracy", "--budget", str(budget), "--max-exits", "1")
    result = _run(_args(d, ["phone", "board"], *extra))
    assert result.exit_code == 0, result.output
    assert "phone.json" in result.output and "mIoU" in result.output
    assert "board.json: no feasible configuration" in result.output


def test_mismatched_tables_and_units_are_user_errors(files, tmp_path):
    _, d, _ = files
    other = random_stats(num_samples=4, positions=4, heads=2, seed=2)
    save_costs(random_costs(other, seed=2), tmp_path / "other.json")
    args = _args(d, ["phone"], "--objective", "pareto", "--costs", str(tmp_path / "other.json"))
    result = _run(args)
    assert isinstance(result.exception, UserError) and result.exception.code == 2
    assert "same parts" in str(result.exception)
    result = _run(_args(d, ["phone", "flops"], "--objective", "max-accuracy", "--budget", "5"))
    assert isinstance(result.exception, UserError) and "units" in str(result.exception)
