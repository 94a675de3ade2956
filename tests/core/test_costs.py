import json
import math

import pytest

from mess.costs import (
    CostsError,
    CostTable,
    check_compatible,
    load_costs,
    parse_costs,
    save_costs,
)
from mess.testing import random_costs, random_stats


@pytest.fixture
def stats():
    return random_stats(num_samples=3, num_classes=2, positions=3, heads=2, seed=2)


@pytest.fixture
def raw(stats):
    return random_costs(stats, seed=2).to_json()


def test_a_table_round_trips_through_its_file(raw, tmp_path):
    raw["input_size"] = [512, 512]  # extra keys (mess costs writes this one) are kept
    table = parse_costs(raw)
    save_costs(table, tmp_path / "k.json")
    back = load_costs(tmp_path / "k.json")
    assert back == table
    assert json.loads((tmp_path / "k.json").read_text())["input_size"] == [512, 512]
    assert list(back.segments) == list(raw["segments"])  # file order kept


def test_reaching_a_position_sums_segments_in_file_order(raw):
    table = parse_costs(raw)
    names = list(table.segments)
    expected = 0.0
    for name in names:
        expected += table.segments[name]
        assert table.reach(name) == expected
    assert table.original_cost() == table.reach("final") + table.heads["final"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(format="x"), "format"),
        (lambda r: r.update(version=2), "version 2"),
        (lambda r: r.pop("heads"), "missing key 'heads'"),
        (lambda r: r.update(unit="s"), "unit"),
        (lambda r: r["heads"].update(final=-1.0), "heads['final']"),
        (lambda r: r["policy"].update({next(iter(r["policy"])): math.nan}), "finite"),
        (lambda r: r["segments"].update(block0="3"), "must be a number"),
        (lambda r: r["segments"].update(block0=True), "must be a number"),
        (lambda r: r.update(device=[1]), "device"),
    ],
)
def test_invalid_tables_are_rejected(raw, change, message):
    change(raw)
    with pytest.raises(CostsError, match=None) as info:
        parse_costs(raw)
    assert message in str(info.value)


def test_final_must_be_the_last_segment(raw):
    segments = raw["segments"]
    raw["segments"] = {"final": segments.pop("final"), **segments}
    with pytest.raises(CostsError, match="'final' last"):
        parse_costs(raw)


def test_compatible_tables_pass(stats, raw):
    check_compatible(parse_costs(raw), stats)


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("heads", "block1/crm0-b0-rdi0-dlv3", "heads miss exit 'block1/crm0-b0-rdi0-dlv3'"),
        ("policy", "block2/crm0-b0-rdi0-fcn", "policy misses exit 'block2/crm0-b0-rdi0-fcn'"),
        ("segments", "block1", "segments miss position 'block1'"),
        ("heads", "final", "heads miss 'final'"),
    ],
)
def test_incompatible_tables_name_the_first_missing_key(stats, raw, section, key, message):
    del raw[section][key]
    if section == "segments":
        table = CostTable("ms", "median", None, raw["segments"], raw["heads"], raw["policy"])
    else:
        table = parse_costs(raw)
    with pytest.raises(CostsError, match=None) as info:
        check_compatible(table, stats)
    assert message in str(info.value)


def test_positions_out_of_depth_order_are_incompatible(stats, raw):
    seg = raw["segments"]
    raw["segments"] = {
        "block1": seg["block1"],
        "block0": seg["block0"],
        "block2": seg["block2"],
        "final": seg["final"],
    }
    with pytest.raises(CostsError, match="before"):
        check_compatible(parse_costs(raw), stats)


def test_unreadable_files_are_costs_errors(tmp_path):
    (tmp_path / "k.json").write_text("{oops")
    with pytest.raises(CostsError, match="not valid JSON"):
        load_costs(tmp_path / "k.json")
    with pytest.raises(CostsError, match="cannot read"):
        load_costs(tmp_path / "missing.json")
