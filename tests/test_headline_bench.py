"""``bench/headline.py``: the JSON line on the micro preset (real training, onnxruntime), its
internal consistency, reuse by digest, and the GPU preset's refusal on a CPU."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from tests.benchmarks import load_bench

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

SETTINGS = [
    "original",
    "min-cost@0.1pp",
    "min-cost@0.1pp/static",
    "min-cost@1pp",
    "min-cost@1pp/static",
    "max-accuracy@1x",
    "max-accuracy@1x/static",
]


headline = load_bench("headline")


def _last_json(out: str) -> dict:
    lines = out.strip().splitlines()
    assert len(lines) == 1, "--json: stdout holds the JSON line alone"
    return json.loads(lines[-1])


def test_micro_preset_prints_a_consistent_headline_and_reuses_its_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--preset", "micro", "--workdir", str(tmp_path), "--json", "--rounds", "1"]
    assert headline.main(args) == 0
    summary = _last_json(capsys.readouterr().out)

    assert summary["preset"] == "micro"
    assert isinstance(summary["device"], str) and "onnxruntime" in summary["device"]
    base = summary["baseline"]
    assert set(base) >= {"miou", "gflops", "latency_ms"}
    assert 0.0 <= base["miou"] <= 1.0 and base["gflops"] > 0 and base["latency_ms"] > 0
    rows = summary["rows"]
    assert [r["setting"] for r in rows] == SETTINGS
    for r in rows:
        assert set(r) >= {"setting", "miou", "gflops", "latency_ms"}
        assert 0.0 <= r["miou"] <= 1.0
        assert r["speedup"] == pytest.approx(base["latency_ms"] / r["latency_ms"], rel=1e-12)
        assert r["miou_change_pp"] == pytest.approx(100 * (r["miou"] - base["miou"]), abs=1e-9)
        assert sum(r["exit_fractions"]) == pytest.approx(1.0)
        assert 0.0 <= r["predicted"]["miou"] <= 1.0

    by = {r["setting"]: r for r in rows}
    original = by["original"]
    assert original["configuration"] == {"exits": [], "terminal": "final"}
    assert original["exit_fractions"] == [1.0]
    assert (original["miou"], original["latency_ms"], original["gflops"]) == (
        base["miou"],
        base["latency_ms"],
        base["gflops"],
    )
    ref = original["predicted"]
    # the search's constraints hold on the calibration split
    assert by["min-cost@0.1pp"]["predicted"]["miou"] >= ref["miou"] - 0.001 - 1e-12
    assert by["min-cost@1pp"]["predicted"]["miou"] >= ref["miou"] - 0.01 - 1e-12
    assert by["max-accuracy@1x"]["predicted"]["latency_ms"] <= ref["latency_ms"] + 1e-9
    assert by["max-accuracy@1x"]["predicted"]["miou"] >= ref["miou"]
    for name in SETTINGS[1:]:
        if name.endswith("/static"):
            assert by[name]["configuration"]["exits"] == []
            dynamic = by[name.removesuffix("/static")]["predicted"]
            # the dynamic space holds every static configuration
            if name.startswith("min-cost"):
                assert dynamic["latency_ms"] <= by[name]["predicted"]["latency_ms"] + 1e-9
            else:
                assert dynamic["miou"] >= by[name]["predicted"]["miou"]
    top = summary["ceiling"]  # no setting predicts more than the space's best configuration
    assert max(r["predicted"]["miou"] for r in rows) <= top["miou"] + 1e-12
    assert top["gain_pp"] == pytest.approx(100 * (top["miou"] - ref["miou"]), abs=1e-9)
    for r in rows:  # a static path costs the same on every image: test = calibration
        if not r["configuration"]["exits"]:
            assert r["gflops"] == pytest.approx(r["predicted"]["gflops"], rel=1e-9)
            assert r["sum_of_parts_ms"] == pytest.approx(r["predicted"]["latency_ms"], rel=1e-9)

    assert json.loads((tmp_path / "headline.json").read_text()) == summary
    assert (tmp_path / "headline-micro.png").stat().st_size > 10_000

    # a second run reuses the trained supernet, stats, bundle and profile
    assert headline.main(args) == 0
    again = _last_json(capsys.readouterr().out)
    assert again["stage_seconds"] == {}
    assert again["profile"]["seconds"] == summary["profile"]["seconds"]
    assert [r["miou"] for r in again["rows"]] == [r["miou"] for r in rows]

    # a longer stage 2: stage 1 reused, stage 2 and what follows rebuilt, the run records it
    assert headline.main([*args, "--stage2-epochs", "2"]) == 0
    longer = _last_json(capsys.readouterr().out)
    assert longer["preset_settings"]["stage2_epochs"] == 2
    assert longer["preset_settings"]["stage1_epochs"] == headline.MICRO.stage1_epochs
    built = [name.split(" (")[0] for name in longer["stage_seconds"]]
    assert built == ["train stage 2", "calibrate", "export bundle"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--stage2-epochs", "0"),
        ("--stage1-epochs", "-3"),
        ("--stage2-epochs", "two"),
        ("--stage2-lr", "0"),
        ("--stage2-lr", "nan"),
        ("--stage2-lr", "inf"),
    ],
)
def test_bad_overrides_are_refused(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        headline.main(["--preset", "micro", option, value])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_changed_inputs_invalidate_that_stage_and_the_ones_after(tmp_path: Path) -> None:
    outputs = [name for name, _ in headline.BUILD_STAGES]
    for name in outputs:
        (tmp_path / name).write_text("x")
    assert headline.prepare_workdir(tmp_path, headline.MICRO) == outputs  # no record yet
    for name in outputs:
        (tmp_path / name).write_text("x")
    assert headline.prepare_workdir(tmp_path, headline.MICRO) == []
    changed = dataclasses.replace(headline.MICRO, stage2_epochs=2)
    removed = headline.prepare_workdir(tmp_path, changed)
    assert removed == ["supernet.pt", "stats.npz", "supernet.mess"]
    assert (tmp_path / "stage1.pt").exists() and not (tmp_path / "supernet.pt").exists()
    # test-split and profiling settings do not touch the build
    for name in removed:
        (tmp_path / name).write_text("x")
    other = dataclasses.replace(changed, test_images=7, tier="full", budget_fraction=0.9)
    assert headline.prepare_workdir(tmp_path, other) == []
    for name in removed:
        (tmp_path / name).write_text("x")
    faster = dataclasses.replace(other, stage2_lr=0.1)
    assert headline.prepare_workdir(tmp_path, faster) == removed


def test_a_field_left_at_none_keeps_the_digests_of_older_work_folders() -> None:
    # bench/headline.py's digest of MICRO before Preset had stage2_lr (commit fea3ca9)
    before = "2934c5c8a83c7fcd2d4ada71782d8c76507e899057e94b1f4c0217221380bdfb"
    assert headline.build_digests(headline.MICRO)["supernet.mess"] == before
    with_rate = dataclasses.replace(headline.MICRO, stage2_lr=headline.MICRO.lr)
    assert headline.build_digests(with_rate)["supernet.mess"] != before


def test_stage2_learning_rate_reaches_stage_2_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from mess.demo import Demo

    calls = []

    class Stop(Exception):
        pass

    def run_training(stage: str, supernet: Path, *, output: Path, **kwargs: object) -> None:
        calls.append((stage, kwargs["lr"]))
        if stage == "stage2":
            raise Stop
        shutil.copy(supernet, output)

    monkeypatch.setattr("mess.cli.train.run_training", run_training)
    preset = dataclasses.replace(headline.MICRO, lr=0.02, stage2_lr=0.5)
    with pytest.raises(Stop):
        Demo(tmp_path, preset, Console(quiet=True)).build()
    assert calls == [("stage1", 0.02), ("stage2", 0.5)]
    calls.clear()
    (tmp_path / "stage1.pt").unlink()
    with pytest.raises(Stop):  # without it, stage 2 runs at the preset's one rate
        Demo(tmp_path, headline.MICRO, Console(quiet=True)).build()
    assert calls == [("stage1", headline.MICRO.lr), ("stage2", headline.MICRO.lr)]


def test_a_build_trained_elsewhere_is_calibrated_and_exported_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer, target = tmp_path / "gpu", tmp_path / "cpu"
    assert headline.main(["--preset", "micro", "--workdir", str(trainer), "--build-only"]) == 0
    assert (trainer / "supernet.mess").exists()
    assert "built" in capsys.readouterr().out
    target.mkdir()
    for name in ("supernet.pt", "digests.json"):  # what travels: the checkpoint and its digests
        shutil.copy(trainer / name, target / name)
    trained = (target / "supernet.pt").read_bytes()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a missing intermediate checkpoint was rebuilt")

    monkeypatch.setattr("mess.cli.train.run_training", no_training)
    assert headline.main(["--preset", "micro", "--workdir", str(target), "--build-only"]) == 0
    assert (target / "supernet.pt").read_bytes() == trained
    assert not (target / "stage1.pt").exists() and not (target / "supernet-init.pt").exists()
    assert (target / "stats.npz").exists() and (target / "supernet.mess").exists()
    # the stats are a product, not an intermediate: gone, they are calibrated again
    (target / "stats.npz").unlink()
    assert headline.main(["--preset", "micro", "--workdir", str(target), "--build-only"]) == 0
    assert (target / "stats.npz").exists()
    # a changed stage 2 still retrains: its digest removes supernet.pt, so stage 1 is needed
    with pytest.raises(AssertionError, match="rebuilt"):
        headline.main(
            ["--preset", "micro", "--workdir", str(target), "--build-only", "--stage2-epochs", "2"]
        )


def test_paper_preset_is_refused_without_a_gpu_unless_forced(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = headline.gpu_refusal("paper", force=False, cuda=False)
    assert message is not None and "--force" in message
    assert headline.gpu_refusal("paper", force=True, cuda=False) is None
    assert headline.gpu_refusal("paper", force=False, cuda=True) is None
    assert headline.gpu_refusal("small", force=False, cuda=False) is None
    import torch

    if not torch.cuda.is_available():  # on a GPU box main() would start the real run
        assert headline.main(["--preset", "paper"]) == 2
        assert "--force" in capsys.readouterr().err


def _row(setting: str, speedup: float, change_pp: float) -> dict:
    return {"setting": setting, "speedup": speedup, "miou_change_pp": change_pp}


def test_goals_check_each_setting_and_its_static_model_apart() -> None:
    rows = [
        _row("min-cost@0.1pp", 11.8, -0.35),  # fast, but lost more than 0.1 pp on test
        _row("min-cost@0.1pp/static", 10.3, 1.0),
        _row("max-accuracy@1x", 7.8, 5.4),
        _row("max-accuracy@1x/static", 0.9, 6.0),  # more accurate, but slower than the original
    ]
    g = headline.goals(rows)
    acc, cost = g["same_accuracy"], g["same_cost"]
    assert (acc["met"], acc["static"]["met"]) == (False, True)
    assert (acc["speedup"], acc["miou_change_pp"]) == (11.8, -0.35)
    assert acc["static"] == {"speedup": 10.3, "miou_change_pp": 1.0, "met": True}
    assert (cost["met"], cost["static"]["met"]) == (True, False)
    assert acc["goal_speedup"] == 2.83 and cost["goal_pp"] == 5.33
    # at the goal itself counts as met
    edge = headline.goals([_row(s, 2.83, -0.1) for s in SETTINGS[1:]])
    assert edge["same_accuracy"]["met"] and not edge["same_cost"]["met"]


def test_plot_labels_of_nearly_coinciding_points_do_not_overlap() -> None:
    # Two models a point apart (max-accuracy@1x and its static model in the run of record),
    # and one far away: the second label moves, the far one keeps the first offset.
    anchors = [(100.0, 200.0), (101.0, 201.0), (400.0, 50.0)]
    texts = ["max-accuracy@1x", "max-accuracy@1x/static", "original"]
    offsets = headline.label_offsets(anchors, texts, size=6)
    assert offsets[0] == offsets[2] == headline.LABEL_OFFSETS[0]
    assert offsets[1] != offsets[0]
    # Every free spot taken: the first offset, not an error.
    crowd = [(0.0, 0.0)] * (len(headline.LABEL_OFFSETS) + 2)
    crowded = headline.label_offsets(crowd, ["x" * 20] * len(crowd), size=6)
    assert crowded[-1] == headline.LABEL_OFFSETS[0]
    assert len(set(crowded[: len(headline.LABEL_OFFSETS)])) == len(headline.LABEL_OFFSETS)
