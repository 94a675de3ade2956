"""``mess.pipeline.reuse``: the digests (pinned for older work folders), what a changed setting
invalidates, and which stages run again."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from rich.console import Console

from mess.pipeline import BUILD_STAGES, MICRO, SMALL, Preset, Stage, build_digests, run_stages
from mess.pipeline.reuse import RECORD, discard_stale


def test_changed_inputs_invalidate_that_stage_and_the_ones_after(tmp_path: Path) -> None:
    outputs = [name for name, _ in BUILD_STAGES]
    for name in outputs:
        (tmp_path / name).write_text("x")
    assert discard_stale(tmp_path, build_digests(MICRO)) == outputs  # no record yet
    for name in outputs:
        (tmp_path / name).write_text("x")
    assert discard_stale(tmp_path, build_digests(MICRO)) == []
    changed = dataclasses.replace(MICRO, stage2_epochs=2)
    removed = discard_stale(tmp_path, build_digests(changed))
    assert removed == ["supernet.pt", "stats.npz", "supernet.mess"]
    assert (tmp_path / "stage1.pt").exists() and not (tmp_path / "supernet.pt").exists()
    assert json.loads((tmp_path / RECORD).read_text()) == build_digests(changed)
    # test-split and profiling settings do not touch the build
    for name in removed:
        (tmp_path / name).write_text("x")
    other = dataclasses.replace(changed, test_images=7, tier="full", budget_fraction=0.9)
    assert discard_stale(tmp_path, build_digests(other)) == []
    for name in removed:
        (tmp_path / name).write_text("x")
    faster = dataclasses.replace(other, stage2_lr=0.1)
    assert discard_stale(tmp_path, build_digests(faster)) == removed


def test_a_stale_training_checkpoint_goes_with_its_output(tmp_path: Path) -> None:
    discard_stale(tmp_path, build_digests(MICRO))
    (tmp_path / "supernet.pt").write_text("x")
    (tmp_path / "supernet.pt.ckpt").write_text("x")
    removed = discard_stale(tmp_path, build_digests(dataclasses.replace(MICRO, stage2_epochs=3)))
    assert removed == ["supernet.pt", "supernet.pt.ckpt"]


def test_a_field_left_at_none_keeps_the_digests_of_older_work_folders() -> None:
    # bench/headline.py's digest of MICRO before Preset had stage2_lr (commit fea3ca9)
    before = "2934c5c8a83c7fcd2d4ada71782d8c76507e899057e94b1f4c0217221380bdfb"
    assert build_digests(MICRO)["supernet.mess"] == before
    with_rate = dataclasses.replace(MICRO, stage2_lr=MICRO.lr)
    assert build_digests(with_rate)["supernet.mess"] != before


# The small preset of the first headline runs (mess-synth version 1): fields added to Preset
# since then keep an unhashed default, so the folders built with it stay valid.
FIRST_SMALL = Preset(
    model="torchvision:resnet18",
    num_classes=8,
    space="crm0-b0-rdi0-fcn,crm1-b0-rdi0-fcn,crm1-b1-rdi1-fcn,crm1-b0-rdi0-dlv3,crm0-b2-rdi1-dlv3",
    size=(128, 128),
    output_stride=8,
    train_images=640,
    stage1_epochs=8,
    stage2_epochs=48,
    batch_size=16,
    lr=0.02,
    calibration_images=400,
    test_images=200,
    budget_fraction=0.6,
    tier="quick",
    stage2_lr=0.1,
)


def test_fields_added_later_keep_the_digests_of_the_first_headline_builds() -> None:
    # recorded in digests.json by bench/headline.py before the pipeline module (commit 285b39e)
    assert build_digests(FIRST_SMALL) == {
        "supernet-init.pt": "c742b8cf1a3fdc202e3713102dd071d46a3f20b80cf7060de8b4a2c4e56ebbf5",
        "stage1.pt": "629b5ef8e89ddbe961c49efa8d3fda6ec6ca2cf3ee9f26b77dfc6ee7adf3c764",
        "supernet.pt": "1509ac7c27326a3abbf62a5e411991c031cc85f0e3f2db0ebfd6810f06c1ef14",
        "stats.npz": "1a2dd3589c5e1a319108855881225b247593b93acaa17910974112e93c3c845c",
        "supernet.mess": "bdfad9a6edcd81629219dcc56209a55e454968292fc80acf7a6001c3f324faec",
    }


class Recorder:
    """Stages that write their output and note that they ran."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ran: list[str] = []

    def stage(self, output: str, fields: tuple[str, ...], **kwargs: object) -> Stage:
        def run() -> None:
            self.ran.append(output)
            (self.workdir / output).write_text("built")

        return Stage(output, fields, run, **kwargs)  # type: ignore[arg-type]

    def stages(self) -> list[Stage]:
        return [
            self.stage("a.pt", ("a",), title="a", intermediate=True),
            self.stage("b.pt", ("b",), title="b", intermediate=True),
            self.stage("c.npz", ("c",), title="c"),
            self.stage("d.onnx", (), title=None),
        ]

    def run(self, until: str | None = None, **settings: object) -> dict[str, float]:
        self.ran.clear()
        return run_stages(
            workdir=self.workdir,
            stages=self.stages(),
            settings={"a": 1, "b": 1, "c": 1, **settings},
            console=Console(quiet=True),
            until=until,
        )


def test_stages_run_once_then_are_reused_and_a_quiet_stage_is_not_timed(tmp_path: Path) -> None:
    r = Recorder(tmp_path)
    assert list(r.run()) == ["a", "b", "c"]
    assert r.ran == ["a.pt", "b.pt", "c.npz", "d.onnx"]
    assert r.run() == {} and r.ran == []
    # a changed setting: its stage and every later one
    assert list(r.run(b=2)) == ["b", "c"]
    assert r.ran == ["b.pt", "c.npz", "d.onnx"]


def test_a_missing_product_is_rebuilt_with_everything_after_it(tmp_path: Path) -> None:
    r = Recorder(tmp_path)
    r.run()
    (tmp_path / "c.npz").unlink()
    r.run()
    assert r.ran == ["c.npz", "d.onnx"]


def test_a_missing_checkpoint_is_not_rebuilt_while_a_later_output_is_valid(
    tmp_path: Path,
) -> None:
    r = Recorder(tmp_path)
    r.run()
    (tmp_path / "a.pt").unlink()  # trained elsewhere: only b.pt and the record travel
    (tmp_path / "c.npz").unlink()
    (tmp_path / "d.onnx").unlink()
    r.run()
    assert r.ran == ["c.npz", "d.onnx"]
    # once b.pt is stale, a.pt is needed again
    r.run(b=2)
    assert r.ran == ["a.pt", "b.pt", "c.npz", "d.onnx"]


def test_a_build_until_an_output_stops_there_and_keeps_the_later_outputs(tmp_path: Path) -> None:
    r = Recorder(tmp_path)
    assert list(r.run(until="b.pt")) == ["a", "b"] and r.ran == ["a.pt", "b.pt"]
    r.run()  # the rest of the build goes on from there
    assert r.ran == ["c.npz", "d.onnx"]
    # a checkpoint asked for is made again even though the outputs after it are valid, and
    # they stay (same inputs, same digests)
    (tmp_path / "a.pt").unlink()
    r.run(until="a.pt")
    assert r.ran == ["a.pt"] and (tmp_path / "c.npz").exists()
    assert r.run(until="b.pt") == {} and r.ran == []
    r.run()
    assert r.ran == []
    # an unknown output is refused before anything is touched
    with pytest.raises(ValueError, match="no stage makes 'e.pt'"):
        r.run(until="e.pt", a=2)
    assert (tmp_path / "a.pt").exists()


def test_the_optimizer_is_part_of_the_training_and_sgd_keeps_the_published_digests() -> None:
    assert build_digests(dataclasses.replace(SMALL, optimizer="sgd")) == build_digests(SMALL)
    ours, adamw = build_digests(SMALL), build_digests(dataclasses.replace(SMALL, optimizer="adamw"))
    assert ours["supernet-init.pt"] == adamw["supernet-init.pt"]
    assert all(ours[name] != adamw[name] for name, _ in BUILD_STAGES[1:])


def test_the_synth_version_is_part_of_the_training_data() -> None:
    v1 = dataclasses.replace(SMALL, synth_version=1)
    assert v1.data == "synth:12" and SMALL.data == "synth:12:version=2"
    ours, theirs = build_digests(SMALL), build_digests(v1)
    assert ours["supernet-init.pt"] == theirs["supernet-init.pt"]
    assert all(ours[name] != theirs[name] for name, _ in BUILD_STAGES[1:])


def test_the_augmentation_keys_the_training_and_its_default_the_published_digests() -> None:
    published = build_digests(SMALL)
    assert build_digests(dataclasses.replace(SMALL, augment_scale=(0.5, 2.0))) == published
    flip_only = build_digests(dataclasses.replace(SMALL, augment_scale=(1.0, 1.0)))
    assert flip_only["supernet-init.pt"] == published["supernet-init.pt"]
    assert all(flip_only[name] != published[name] for name, _ in BUILD_STAGES[1:])


def test_seeds_key_their_own_builds_and_seed_zero_keeps_the_published_digests() -> None:
    published = build_digests(SMALL)
    assert build_digests(dataclasses.replace(SMALL, seed=0, data_seed=0)) == published
    trained = build_digests(dataclasses.replace(SMALL, seed=1))
    assert all(trained[name] != published[name] for name in published)  # head init on
    data = build_digests(dataclasses.replace(SMALL, data_seed=1))
    assert data["supernet-init.pt"] == published["supernet-init.pt"]
    assert all(data[name] != published[name] for name, _ in BUILD_STAGES[1:])
    both = build_digests(dataclasses.replace(SMALL, seed=1, data_seed=1))
    assert len({both["supernet.mess"], data["supernet.mess"], trained["supernet.mess"]}) == 3
