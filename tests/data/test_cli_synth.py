import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mess.cli import app
from mess.cli._app import UserError
from mess.cli.synth import write_synth
from mess.data import build_dataset
from mess.data.synth import SynthConfig, generate

runner = CliRunner()


def test_synth_command_writes_a_folder_that_reads_back(tmp_path):
    result = runner.invoke(
        app,
        ["synth", "-o", str(tmp_path), "--split", "test", "--count", "3"]
        + ["--size", "24x40", "--num-classes", "5", "--seed", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 3 test images" in result.output
    meta = json.loads((tmp_path / "test" / "meta.json").read_text())
    assert meta["num_classes"] == 5 and len(meta["difficulty"]) == 3
    ds = build_dataset(f"folder:{tmp_path}", "test")
    assert len(ds) == 3 and ds.num_classes == 5
    _, mask, _ = generate(SynthConfig(num_classes=5, height=24, width=40, seed=2), "test", 1)
    assert np.array_equal(ds[1][1].numpy(), mask)


def test_write_synth_reports_progress(tmp_path):
    steps = []
    write_synth(tmp_path, split="calibration", count=2, size=(16, 16), progress=steps.append)
    assert sum(steps) == 2
    assert sorted(p.name for p in (tmp_path / "calibration" / "masks").iterdir()) == [
        "calibration_000000.png",
        "calibration_000001.png",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num-classes", "30"], "num_classes"),
        (["--split", "val"], "unknown split"),
        (["--count", "0"], "--count"),
        (["--size", "big"], "invalid size"),
    ],
)
def test_synth_command_user_errors(tmp_path, args, message):
    result = runner.invoke(app, ["synth", "-o", str(tmp_path), *args])
    assert isinstance(result.exception, UserError)
    assert message in str(result.exception) and result.exception.code == 2
