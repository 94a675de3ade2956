import json
import sys

import pytest
from typer.testing import CliRunner

from mess.cli import app, main
from mess.cli._app import UserError
from mess.costs import save_costs
from mess.search import ParetoFront, search
from mess.stats import save_stats
from mess.testing import random_costs, random_stats


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("search")
    stats = random_stats(num_samples=12, num_classes=3, positions=3, heads=2, seed=6)
    costs = random_costs(stats, seed=6)
    save_stats(stats, d / "s.npz")
    save_costs(costs, d / "k.json")
    return stats, costs, d


def _args(d, *extra):
    return [
        "search",
        "--stats",
        str(d / "s.npz"),
        "--costs",
        str(d / "k.json"),
        "--image-thresholds",
        "0.2,0.5",
        *extra,
    ]


def test_json_output_is_the_search_result(files):
    stats, costs, d = files
    result = CliRunner().invoke(
        app, _args(d, "--objective", "max-accuracy", "--budget", "15", "--max-exits", "2", "--json")
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    want = search(
        stats,
        costs,
        objective="max-accuracy",
        budget=15.0,
        max_exits=2,
        image_thresholds=[0.2, 0.5],
    ).to_json()
    assert {k: v for k, v in out.items() if k != "seconds"} == {
        k: v for k, v in want.items() if k != "seconds"
    }


def test_pareto_json_lists_the_front_and_stores_it(files):
    _, _, d = files
    result = CliRunner().invoke(
        app,
        _args(
            d,
            "--objective",
            "pareto",
            "--no-truncation",
            "--json",
            "--front-out",
            str(d / "front.npz"),
        ),
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    front = ParetoFront.load(d / "front.npz")
    assert [p.to_json() for p in front.front_2d()] == out["front"]
    assert all(p["configuration"]["terminal"] == "final" for p in out["front"])


def test_min_cost_prints_a_readable_table(files):
    _, _, d = files
    result = CliRunner().invoke(
        app,
        _args(
            d,
            "--objective",
            "min-cost",
            "--max-drop",
            "0.01",
            "--per-exit-thresholds",
            "--max-exits",
            "1",
        ),
    )
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output and "reference" in result.output


def test_no_feasible_configuration_exits_3_naming_alternatives(files, monkeypatch, capsys):
    _, _, d = files
    monkeypatch.setattr(
        sys,
        "argv",
        ["mess", *_args(d, "--objective", "max-accuracy", "--budget", "0.001", "--json")],
    )
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert "Closest feasible" in err and err.count("\n") == 1


def test_bad_files_are_one_line_errors_with_exit_2(files, monkeypatch, capsys, tmp_path):
    _, _, d = files
    (tmp_path / "bad.json").write_text("{}")
    argv = [
        "mess",
        "search",
        "--stats",
        str(d / "s.npz"),
        "--costs",
        str(tmp_path / "bad.json"),
        "--objective",
        "pareto",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "format must be 'mess-costs'" in err
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--stats",
            str(tmp_path / "none.npz"),
            "--costs",
            str(d / "k.json"),
            "--objective",
            "pareto",
        ],
    )
    assert isinstance(result.exception, UserError) and "no such file" in str(result.exception)


def test_missing_budget_and_bad_grid_are_user_errors(files):
    _, _, d = files
    result = CliRunner().invoke(app, _args(d, "--objective", "max-accuracy"))
    assert isinstance(result.exception, UserError) and "--budget" in str(result.exception)
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--stats",
            str(d / "s.npz"),
            "--costs",
            str(d / "k.json"),
            "--objective",
            "pareto",
            "--image-thresholds",
            "0.5,x",
        ],
    )
    assert isinstance(result.exception, UserError) and "image-thresholds" in str(result.exception)
