"""``bench.headline``: the JSON line on the micro preset (real training, onnxruntime), its
internal consistency, reuse by digest, and the GPU preset's refusal on a CPU. The reuse rule
itself is tested in ``tests/pipeline``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from bench import headline  # noqa: E402
from bench.headline_report import LABEL_OFFSETS, label_offsets  # noqa: E402
from bench.headline_select import goals  # noqa: E402
from mess.pipeline import MICRO  # noqa: E402
from mess.pipeline.data import pipeline_dataset  # noqa: E402

SETTINGS = [
    "original",
    "min-cost@0.1pp",
    "min-cost@0.1pp/static",
    "min-cost@1pp",
    "min-cost@1pp/static",
    "max-accuracy@1x",
    "max-accuracy@1x/static",
]


def _last_json(out: str) -> dict:
    lines = out.strip().splitlines()
    assert len(lines) == 1, "--json: stdout holds the JSON line alone"
    return json.loads(lines[-1])


def guard_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading the test split fail until the final measurement loads it."""
    import mess.data.datasets as datasets

    build, load = datasets.build_dataset, headline.load_test_split
    opened = [False]

    def guarded(spec: str, split: str, **options: object) -> object:
        if split == "test" and not opened[0]:
            raise AssertionError("the test split was read before the final measurement")
        return build(spec, split, **options)

    def measure(**options: object) -> object:
        opened[0] = True
        return load(**options)

    monkeypatch.setattr(datasets, "build_dataset", guarded)
    monkeypatch.setattr(headline, "load_test_split", measure)


@pytest.mark.timeout(900)  # trains a micro supernet: ~2 min alone, 5 on a loaded box
def test_micro_preset_prints_a_consistent_headline_and_reuses_its_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    guard_test_split(monkeypatch)
    with pytest.raises(AssertionError, match="before the final measurement"):  # the guard holds
        pipeline_dataset("synth:4", "test", size=(32, 32), length=1)
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
        # one seed: the means are that seed's figures, no spread
        assert r["delta_pp"] == r["miou_change_pp"]
        assert r["delta_pp_std"] == r["speedup_std"] == 0.0
        assert r["delta_pp_ci95"][0] <= r["delta_pp_ci95"][1]
        assert 0 < r["speedup_ci95"][0] <= r["speedup_ci95"][1]
        assert [s["seed"] for s in r["per_seed"]] == [0]

    by = {r["setting"]: r for r in rows}
    for r in rows:  # the dynamic answer and the static cut side by side
        static = (
            by[f"{r['setting'].removesuffix('/static')}/static"] if r["mode"] != "original" else r
        )
        assert (r["static_speedup"], r["static_delta_pp"]) == (
            static["speedup"],
            static["delta_pp"],
        )
    assert by["original"]["delta_pp_ci95"] == [0.0, 0.0]
    assert by["original"]["speedup_ci95"] == pytest.approx([1.0, 1.0])

    assert (summary["seeds"], summary["data_seed"]) == ([0], 0)
    regime = summary["regime"]
    assert regime["split"] == "calibration" and isinstance(regime["converged"], bool)
    assert regime["convergence_delta_pp"] is not None
    assert regime["converged"] == (abs(regime["convergence_delta_pp"]) < 0.5)
    assert isinstance(regime["final_minus_best_shallow_pp"], float)
    splits = summary["splits"]
    assert (splits["calibration"], splits["test"]) == (MICRO.calibration_images, MICRO.test_images)
    assert {k: d["images"] for k, d in splits["difficulty"].items()} == {
        "train": MICRO.train_images,
        "calibration": MICRO.calibration_images,
        "test": MICRO.test_images,
    }
    assert splits["balanced"] == (splits["unbalanced"] == [])

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
    # --build-only on a built folder: nothing to build
    assert headline.main(["--preset", "micro", "--workdir", str(tmp_path), "--build-only"]) == 0
    built = capsys.readouterr().out
    assert re.search(rf"built {re.escape(str(tmp_path))}: ?\n", built)  # nothing trained
    assert "regime (calibration split)" in built and "by depth, first seed" in built

    # a longer stage 2: stage 1 reused, stage 2 and what follows rebuilt, the run records it
    assert headline.main([*args, "--stage2-epochs", "2"]) == 0
    longer = _last_json(capsys.readouterr().out)
    assert longer["preset_settings"]["stage2_epochs"] == 2
    assert longer["preset_settings"]["stage1_epochs"] == MICRO.stage1_epochs
    built = [name.split(" (")[0] for name in longer["stage_seconds"]]
    assert built == ["train stage 2", "calibrate", "export bundle"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_two_seeds_build_apart_resume_and_report_their_spread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--preset", "micro", "--workdir", str(tmp_path), "--json", "--rounds", "1"]
    args += ["--seeds", "2", "--resamples", "200"]
    assert headline.main(args) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["seeds"] == [0, 1]
    for folder in (tmp_path, tmp_path / "seed-1"):
        assert (folder / "supernet.mess").exists()
        assert (folder / "convergence" / "convergence.json").exists()
    assert len(summary["regime"]["per_seed"]) == 2
    for r in summary["rows"]:
        seeds = r["per_seed"]
        assert [s["seed"] for s in seeds] == [0, 1]
        assert r["speedup"] == pytest.approx(np.mean([s["speedup"] for s in seeds]))
        assert r["delta_pp"] == pytest.approx(np.mean([s["miou_change_pp"] for s in seeds]))
        assert r["delta_pp_std"] == pytest.approx(
            np.std([s["miou_change_pp"] for s in seeds], ddof=1)
        )
    # every seed is built: a second run trains nothing
    assert headline.main(args) == 0
    assert _last_json(capsys.readouterr().out)["stage_seconds"] == {}
    # another data seed builds in its own folder
    build = ["--preset", "micro", "--workdir", str(tmp_path), "--data-seed", "1", "--build-only"]
    assert headline.main(build) == 0
    assert (tmp_path / "data-seed-1" / "supernet.mess").exists()
    assert not (tmp_path / "data-seed-1" / "seed-1").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--stage2-epochs", "0"),
        ("--stage1-epochs", "-3"),
        ("--stage2-epochs", "two"),
        ("--stage2-lr", "0"),
        ("--stage2-lr", "nan"),
        ("--stage2-lr", "inf"),
        ("--lr", "-0.1"),
        ("--optimizer", "adam"),
        ("--train-images", "0"),
        ("--augment-scale", "2,0.5"),
        ("--augment-scale", "0,1"),
        ("--augment-scale", "1"),
        ("--augment-scale", "1,inf"),
        ("--stage1-only", "--json"),  # without --build-only
    ],
)
def test_bad_overrides_are_refused(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        headline.main(["--preset", "micro", option, value])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_only_the_overridable_settings_override_the_preset() -> None:
    preset = headline.resolve_preset("micro", augment_scale=(1.0, 1.0), lr=None)
    assert preset.augment_scale == (1.0, 1.0) and preset.lr == headline.ALL_PRESETS["micro"].lr
    with pytest.raises(TypeError, match="not a setting to override: num_classes"):
        headline.resolve_preset("micro", num_classes=3)


def test_a_stage1_study_trains_no_heads_and_prints_its_convergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = ["--preset", "micro", "--workdir", str(tmp_path), "--build-only", "--stage1-only"]
    assert headline.main([*study, "--optimizer", "adamw", "--lr", "0.001"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"seed 0: final on the calibration split [\d.]+ % after 1 epochs, ", out)
    assert re.search(r"after 2: [-+][\d.]+ pp, (converged|not converged)", out)
    assert (tmp_path / "stage1.pt").exists() and not (tmp_path / "supernet.pt").exists()
    assert (tmp_path / "convergence" / "convergence.json").exists()
    # the optimiser keys the build: SGD (the preset's) is another stage 1
    assert headline.main(study) == 0
    assert "train stage 1" in capsys.readouterr().out
    # so does the training set's size
    assert headline.main([*study, "--train-images", "16"]) == 0
    assert "train stage 1" in capsys.readouterr().out
    # and the augmentation: the preset's scale range, given, is the same build; another not
    assert headline.main([*study, "--train-images", "16", "--augment-scale", "0.5,2"]) == 0
    assert "reuse train stage 1 (exit-aware backbone)" in capsys.readouterr().out
    assert headline.main([*study, "--train-images", "16", "--augment-scale", "1,1"]) == 0
    assert "train stage 1" in capsys.readouterr().out


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
    g = goals(rows)
    acc, cost = g["same_accuracy"], g["same_cost"]
    assert (acc["met"], acc["static"]["met"]) == (False, True)
    assert (acc["speedup"], acc["miou_change_pp"]) == (11.8, -0.35)
    assert acc["static"] == {"speedup": 10.3, "miou_change_pp": 1.0, "met": True}
    assert (cost["met"], cost["static"]["met"]) == (True, False)
    assert acc["goal_speedup"] == 2.83 and cost["goal_pp"] == 5.33
    # at the goal itself counts as met
    edge = goals([_row(s, 2.83, -0.1) for s in SETTINGS[1:]])
    assert edge["same_accuracy"]["met"] and not edge["same_cost"]["met"]


def test_plot_labels_of_nearly_coinciding_points_do_not_overlap() -> None:
    # Two models a point apart (max-accuracy@1x and its static model in the run of record),
    # and one far away: the second label moves, the far one keeps the first offset.
    anchors = [(100.0, 200.0), (101.0, 201.0), (400.0, 50.0)]
    texts = ["max-accuracy@1x", "max-accuracy@1x/static", "original"]
    offsets = label_offsets(anchors, texts, size=6)
    assert offsets[0] == offsets[2] == LABEL_OFFSETS[0]
    assert offsets[1] != offsets[0]
    # Every free spot taken: the first offset, not an error.
    crowd = [(0.0, 0.0)] * (len(LABEL_OFFSETS) + 2)
    crowded = label_offsets(crowd, ["x" * 20] * len(crowd), size=6)
    assert crowded[-1] == LABEL_OFFSETS[0]
    assert len(set(crowded[: len(LABEL_OFFSETS)])) == len(LABEL_OFFSETS)
