"""``mess.pipeline.build``: each stage gets its own settings, a build trained on one machine
goes on on another, and the library's own errors for unusable inputs."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from mess.pipeline import MICRO, PipelineError, run_build, train_supernet

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

QUIET = Console(quiet=True)


def test_stage2_learning_rate_reaches_stage_2_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    class Stop(Exception):
        pass

    def train(*, stage: str, supernet: Path, output: Path, **kwargs: object) -> None:
        calls.append((stage, kwargs["lr"]))
        if stage == "stage2":
            raise Stop
        shutil.copy(supernet, output)

    monkeypatch.setattr("mess.pipeline.build.train_supernet", train)
    preset = dataclasses.replace(MICRO, lr=0.02, stage2_lr=0.5)
    with pytest.raises(Stop):
        run_build(workdir=tmp_path, preset=preset, console=QUIET)
    assert calls == [("stage1", 0.02), ("stage2", 0.5)]
    calls.clear()
    (tmp_path / "stage1.pt").unlink()
    with pytest.raises(Stop):  # without it, stage 2 runs at the preset's one rate
        run_build(workdir=tmp_path, preset=MICRO, console=QUIET)
    assert calls == [("stage1", MICRO.lr), ("stage2", MICRO.lr)]


@pytest.mark.timeout(900)  # trains a micro supernet: ~1 min alone, 5 on a loaded box
def test_a_build_trained_elsewhere_is_calibrated_and_exported_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer, target = tmp_path / "gpu", tmp_path / "cpu"
    timings = run_build(workdir=trainer, preset=MICRO, console=QUIET)
    assert [t.split(" (")[0] for t in timings] == [
        "convert",
        "train stage 1",
        "train stage 2",
        "calibrate",
        "export bundle",
    ]
    assert (trainer / "supernet.mess").exists()
    assert run_build(workdir=trainer, preset=MICRO, console=QUIET) == {}  # all reused
    target.mkdir()
    for name in ("supernet.pt", "digests.json"):  # what travels: the checkpoint and its digests
        shutil.copy(trainer / name, target / name)
    trained = (target / "supernet.pt").read_bytes()

    def no_training(**kwargs: object) -> None:
        raise AssertionError("a missing intermediate checkpoint was rebuilt")

    monkeypatch.setattr("mess.pipeline.build.train_supernet", no_training)
    assert list(run_build(workdir=target, preset=MICRO, console=QUIET)) == [
        "calibrate",
        "export bundle",
    ]
    assert (target / "supernet.pt").read_bytes() == trained
    assert not (target / "stage1.pt").exists() and not (target / "supernet-init.pt").exists()
    assert (target / "stats.npz").exists() and (target / "supernet.mess").exists()
    # the stats are a product, not an intermediate: gone, they are calibrated again
    (target / "stats.npz").unlink()
    assert list(run_build(workdir=target, preset=MICRO, console=QUIET)) == [
        "calibrate",
        "export bundle",
    ]
    # a changed stage 2 still retrains: its digest removes supernet.pt, so stage 1 is needed
    with pytest.raises(AssertionError, match="rebuilt"):
        run_build(workdir=target, preset=dataclasses.replace(MICRO, stage2_epochs=2), console=QUIET)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stage": "stage3"}, "unknown stage"),
        ({"device": "tpu"}, "invalid device"),
        ({"resume": True}, "no checkpoint"),
    ],
)
def test_unusable_training_inputs_raise_the_librarys_error(
    tmp_path: Path, options: dict, message: str
) -> None:
    kwargs = {"stage": "stage1", "supernet": tmp_path / "sn.pt", "data": "synth"}
    with pytest.raises(PipelineError, match=message):
        train_supernet(**{**kwargs, **options}, output=tmp_path / "out.pt")


def test_a_build_stopped_mid_stage_goes_on_from_its_last_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mess.nn.train.stage1 import Stage1

    preset = dataclasses.replace(MICRO, stage1_epochs=2)
    run_build(workdir=tmp_path, preset=preset, console=QUIET)
    trained = (tmp_path / "stage1.pt").read_bytes()
    assert (tmp_path / "stage1.pt.ckpt").is_file()
    for name in ("stage1.pt", "supernet.pt", "stats.npz", "supernet.mess"):
        (tmp_path / name).unlink()  # as if stopped after stage 1's last epoch, before saving

    def no_more_steps(*args: object, **kwargs: object) -> float:
        raise AssertionError("stage 1 trained again instead of resuming")

    monkeypatch.setattr(Stage1, "step", no_more_steps)
    run_build(workdir=tmp_path, preset=preset, console=QUIET)  # stage 2 resumes likewise
    assert (tmp_path / "stage1.pt").read_bytes() == trained


def test_auto_resume_refuses_nonsense(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="resume"):
        train_supernet(
            stage="stage1",
            supernet=tmp_path / "x.pt",
            data="synth",
            output=tmp_path / "y.pt",
            resume="always",
        )
