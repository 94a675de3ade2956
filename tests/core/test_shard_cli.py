"""``mess search --shard I/N --front-out`` and ``mess merge``: the unsharded answer, printed."""

import json
import sys

import pytest
from typer.testing import CliRunner

from mess.cli import app, main
from mess.cli._app import UserError
from mess.costs import save_costs
from mess.search import ParetoFront
from mess.stats import save_stats
from mess.testing import random_costs, random_stats

GRID = "0.2,0.5"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    stats = random_stats(num_samples=14, num_classes=3, positions=3, heads=2, seed=7)
    save_stats(stats, d / "s.npz")
    save_costs(random_costs(stats, seed=7), d / "phone.json")
    save_costs(random_costs(stats, seed=8), d / "board.json")
    save_costs(random_costs(stats, unit="gflops", seed=7), d / "flops.json")
    return d


def _search(d, tables, *extra):
    costs = [a for t in tables for a in ("--costs", str(d / f"{t}.json"))]
    return ["search", "--stats", str(d / "s.npz"), *costs, "--image-thresholds", GRID, *extra]


def _run(args):
    return CliRunner().invoke(app, args)


def _without_seconds(obj):
    return {k: v for k, v in obj.items() if k != "seconds"}


def _shards(d, tables, query, count, out):
    """Run every shard; returns the paths they wrote (files, or folders for a fleet)."""
    paths = []
    for i in range(count):
        path = out / (f"{i}.npz" if len(tables) == 1 else f"{i}")
        result = _run(_search(d, tables, *query, "--shard", f"{i}/{count}", "--front-out", path))
        assert result.exit_code == 0, result.output
        paths.append(str(path))
    return paths


# (search options, query options): the shards take both, the merge the query only
QUERIES = [
    ((), ("--objective", "pareto")),
    (("--max-exits", "2"), ("--objective", "min-cost", "--max-drop", "0.05")),
    ((), ("--objective", "max-accuracy", "--budget", "20", "--worst-budget", "30")),
]


@pytest.mark.parametrize(("space", "query"), QUERIES)
@pytest.mark.parametrize("count", [1, 3, 12])
def test_merged_shards_print_what_the_unsharded_search_prints(files, tmp_path, space, query, count):
    whole = _run(_search(files, ["phone"], *space, *query, "--json"))
    paths = _shards(files, ["phone"], (*space, *query), count, tmp_path)
    merged = _run(["merge", *reversed(paths), *query, "--json"])
    assert merged.exit_code == whole.exit_code
    if whole.exit_code == 0:
        assert _without_seconds(json.loads(merged.output)) == _without_seconds(
            json.loads(whole.output)
        )
    else:
        assert str(merged.exception) == str(whole.exception)


def test_a_sharded_fleet_merges_into_the_fleet_answer(files, tmp_path):
    query = ("--objective", "max-accuracy", "--budget", "18")
    whole = _run(_search(files, ["phone", "board"], *query, "--json"))
    assert whole.exit_code == 0, whole.output
    paths = _shards(files, ["phone", "board"], query, 3, tmp_path)
    assert sorted(p.name for p in (tmp_path / "0").iterdir()) == ["0-phone.npz", "1-board.npz"]
    out = tmp_path / "merged"
    merged = _run(["merge", *paths, *query, "--json", "--front-out", str(out)])
    assert merged.exit_code == 0, merged.output
    got, want = json.loads(merged.output), json.loads(whole.output)
    assert [_without_seconds(e) for e in got] == [_without_seconds(e) for e in want]
    # the merged fronts are the fleet search's, file for file
    ref = tmp_path / "ref"
    assert _run(_search(files, ["phone", "board"], *query, "--front-out", str(ref))).exit_code == 0
    for name in ("0-phone.npz", "1-board.npz"):
        a, b = ParetoFront.load(out / name), ParetoFront.load(ref / name)
        for field in ("exp", "worst", "miou", "p90", "ranks", "counts"):
            assert getattr(a, field).tobytes() == getattr(b, field).tobytes()


def test_no_feasible_answer_exits_3_as_the_unsharded_search(files, tmp_path, monkeypatch, capsys):
    query = ("--objective", "max-accuracy", "--budget", "0.001")
    paths = _shards(files, ["phone"], query, 2, tmp_path)
    errs = []
    for args in (_search(files, ["phone"], *query, "--json"), ["merge", *paths, *query, "--json"]):
        monkeypatch.setattr(sys, "argv", ["mess", *args])
        with pytest.raises(SystemExit) as info:
            main()
        assert info.value.code == 3
        errs.append(capsys.readouterr().err)
    assert errs[0] == errs[1] and "Closest feasible" in errs[0]
    # a fleet: exit 3 only when no table has an answer, after the array
    fleet = _shards(files, ["phone", "board"], query, 2, tmp_path / "fleet")
    monkeypatch.setattr(sys, "argv", ["mess", "merge", *fleet, *query, "--json"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 3
    out, err = capsys.readouterr()
    assert [e["feasible"] for e in json.loads(out)] == [False, False]
    assert err.startswith("error: no cost table has a feasible configuration")


def test_a_shard_run_reports_its_part(files, tmp_path):
    args = _search(files, ["phone"], "--objective", "pareto", "--json")
    result = _run([*args, "--shard", "1/2", "--front-out", str(tmp_path / "1.npz")])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["shard"] == "1/2" and 0 < info["configs_evaluated"] < info["space_size"]
    assert info["fronts"] == [
        {"path": str(tmp_path / "1.npz"), "points": len(ParetoFront.load(tmp_path / "1.npz"))}
    ]


@pytest.mark.parametrize(
    ("shard", "front_out", "message"),
    [
        ("2/2", True, "shard index must be in 0..1"),
        ("0/0", True, "at least 1"),
        ("x", True, "expected I/N"),
        ("0/2", False, "needs --front-out"),
    ],
)
def test_bad_shard_options_are_user_errors(files, tmp_path, shard, front_out, message):
    extra = ["--shard", shard] + (["--front-out", str(tmp_path / "f.npz")] if front_out else [])
    result = _run(_search(files, ["phone"], "--objective", "pareto", *extra))
    assert isinstance(result.exception, UserError) and result.exception.code == 2
    assert message in str(result.exception)


def test_incomplete_or_mixed_shards_are_user_errors(files, tmp_path):
    paths = _shards(files, ["phone"], ("--objective", "pareto"), 3, tmp_path)
    cases = [
        ([paths[0], paths[2]], r"missing shard(s) 1/3"),
        ([*paths, paths[1]], "more than once"),
        ([paths[0], str(tmp_path / "none.npz")], "no such file"),
        ([str(files / "phone.json")], "not a front file"),
    ]
    fleet = _shards(files, ["phone", "board"], ("--objective", "pareto"), 2, tmp_path / "f")
    cases.append(([paths[0], fleet[0]], "not both"))
    for args, message in cases:
        result = _run(["merge", *args, "--objective", "pareto"])
        assert isinstance(result.exception, UserError), (args, result.output)
        assert result.exception.code == 2 and message in str(result.exception), message


def test_a_merged_fleet_in_two_units_refuses_a_cost_budget(files, tmp_path):
    fleet = _shards(files, ["phone", "flops"], ("--objective", "pareto"), 2, tmp_path)
    result = _run(["merge", *fleet, "--objective", "max-accuracy", "--budget", "5"])
    assert isinstance(result.exception, UserError) and "units" in str(result.exception)
    assert _run(["merge", *fleet, "--objective", "pareto", "--json"]).exit_code == 0


def test_help_names_the_shard_option_and_the_merge():
    assert "--shard" in _run(["search", "--help"]).output
    result = _run(["merge", "--help"])
    assert result.exit_code == 0 and "--objective" in result.output
