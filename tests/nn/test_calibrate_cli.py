import json

from typer.testing import CliRunner

from mess.cli import app
from mess.stats import load_stats


def test_calibrate_command_on_mess_synth_writes_valid_stats(tmp_path):
    runner = CliRunner()
    sn = tmp_path / "sn.pt"
    result = runner.invoke(
        app,
        [
            "convert",
            "--model",
            "torchvision:resnet18",
            "--num-classes",
            "8",
            "--space",
            "tiny",
            "-o",
            str(sn),
        ],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "stats.npz"
    result = runner.invoke(
        app,
        [
            "calibrate",
            "--supernet",
            str(sn),
            "--data",
            "synth:8",
            "--split",
            "calibration",
            "--size",
            "32x32",
            "--length",
            "6",
            "--batch-size",
            "4",
            "--pixel-thresholds",
            "0.5,0.7,0.9",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    stats = load_stats(out)  # validates every invariant of mess-stats v1
    assert stats.confidence.shape == (6, 25, 3)
    assert stats.meta["class_names"][0] == "road"
    costs = tmp_path / "costs.json"
    result = runner.invoke(
        app, ["costs", "--supernet", str(sn), "--input-size", "32x32", "-o", str(costs)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(costs.read_text())["unit"] == "gflops"
