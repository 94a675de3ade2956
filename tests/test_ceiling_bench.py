"""``bench.ceiling``: heads trained again on the headline's frozen stage-1 backbone (micro
preset, real training): the JSON line, the backbone carried over exactly, bad positions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from bench import ceiling  # noqa: E402
from bench._common import ALL_PRESETS  # noqa: E402
from mess.pipeline import MICRO, run_build  # noqa: E402

# The module fixture trains a micro supernet (~1 min alone); its first user pays for it.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def micro_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rich.console import Console

    workdir = tmp_path_factory.mktemp("headline-micro")
    run_build(workdir=workdir, preset=MICRO, console=Console(quiet=True))
    return workdir


def test_probe_supernet_keeps_the_stage1_backbone_and_final_exit(micro_build: Path) -> None:
    from mess.nn import load_supernet

    stage1 = load_supernet(micro_build / "stage1.pt").eval()
    probe = ceiling.probe_supernet(micro_build / "stage1.pt", [ceiling.HEAVIEST]).eval()
    assert [h.id for h in probe.heads] == [ceiling.HEAVIEST]
    assert [p.name for p in probe.positions] == [p.name for p in stage1.positions]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(probe(x, exits=["final"])["final"], stage1(x, exits=["final"])["final"])


def test_default_heads_are_the_heaviest_of_the_full_space_and_of_the_preset() -> None:
    assert ceiling.default_heads(ALL_PRESETS["small"].space) == [
        "crm0-b4-rdi1-dlv3",
        "crm0-b2-rdi1-dlv3",
    ]
    assert ceiling.default_heads("crm0-b4-rdi1-dlv3,crm1-b0-rdi0-fcn") == ["crm0-b4-rdi1-dlv3"]


def test_micro_run_prints_heads_against_final(
    micro_build: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--preset", "micro", "--workdir", str(micro_build), "--epochs", "2", "--json"]
    assert ceiling.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, "--json: stdout holds the JSON line alone"
    summary = json.loads(lines[0])

    assert summary["preset"] == "micro" and 0.0 <= summary["final_miou"] <= 1.0
    positions = ["layer4.0", "layer4.1"]  # the two deepest of ResNet-18
    rows = summary["rows"]
    by = {(r["variant"], r["exit"]) for r in rows}
    assert by == (
        {("headline", f"{p}/crm1-b0-rdi0-fcn") for p in positions}
        | {
            (v, f"{p}/{h}")
            for v in ("distill", "labels")
            for p in positions
            for h in ("crm0-b4-rdi1-dlv3", "crm1-b0-rdi0-fcn")
        }
    )
    for r in rows:
        assert 0.0 <= r["miou"] <= 1.0
        assert r["gain_pp"] == pytest.approx(100 * (r["miou"] - summary["final_miou"]), abs=1e-9)
        assert len(r["val"]) == (0 if r["variant"] == "headline" else 2)
        assert r["epochs"] == (1 if r["variant"] == "headline" else 2)
        assert r["lr"] == MICRO.lr
    assert summary["best_gain_pp"] == max(r["gain_pp"] for r in rows)


def test_an_unknown_position_is_refused(micro_build: Path) -> None:
    args = ["--preset", "micro", "--workdir", str(micro_build), "--positions", "layer9.9"]
    with pytest.raises(SystemExit, match="unknown position"):
        ceiling.main(args)


def test_a_missing_build_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="run python -m bench.headline first"):
        ceiling.main(["--preset", "micro", "--workdir", str(tmp_path)])


def test_stage1_alone_and_several_learning_rates(
    micro_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    shutil.copy(micro_build / "stage1.pt", tmp_path / "stage1.pt")  # no supernet.pt
    args = ["--preset", "micro", "--workdir", str(tmp_path), "--epochs", "1", "--json"]
    args += ["--heads", "crm1-b0-rdi0-fcn", "--positions", "layer4.1", "--variants", "distill"]
    assert ceiling.main([*args, "--lrs", "0.01,0.5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = summary["rows"]
    assert [(r["variant"], r["exit"], r["lr"]) for r in rows] == [
        ("distill", "layer4.1/crm1-b0-rdi0-fcn", 0.01),
        ("distill", "layer4.1/crm1-b0-rdi0-fcn", 0.5),
    ]
    # The learning rate reaches the training: the same seed and data, different heads.
    assert rows[0]["val"] != rows[1]["val"] or rows[0]["miou"] != rows[1]["miou"]


@pytest.mark.parametrize("lrs", ["0.01,abc", "0", "-0.1", "nan"])
def test_bad_learning_rates_are_refused(micro_build: Path, lrs: str) -> None:
    with pytest.raises(SystemExit) as refused:  # argparse's usage error, before any training
        ceiling.main(["--preset", "micro", "--workdir", str(micro_build), "--lrs", lrs])
    assert refused.value.code == 2
