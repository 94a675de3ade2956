from typer.testing import CliRunner

from mess.cli import app
from mess.nn import load_supernet

runner = CliRunner()


def test_convert_then_inspect(tmp_path):
    out = tmp_path / "sn.pt"
    result = runner.invoke(
        app,
        [
            "convert",
            "--model",
            "torchvision:resnet18",
            "--num-classes",
            "6",
            "--space",
            "tiny",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "8 positions" in result.output
    sn = load_supernet(out)
    assert sn.num_classes == 6 and len(sn.positions) == 8
    result = runner.invoke(app, ["inspect", str(out), "--input-size", "64x64"])
    assert result.exit_code == 0, result.output
    assert "layer4.1" in result.output and "GFLOPs" in result.output


def test_convert_with_a_local_checkpoint(tmp_path):
    import torch
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(3)
    source = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    out = tmp_path / "sn.pt"
    result = runner.invoke(
        app,
        [
            "convert",
            "--model",
            "torchvision:lraspp_mobilenet_v3_large",
            "--num-classes",
            "2",
            "--weights",
            str(tmp_path / "w.pth"),
            "--space",
            "tiny",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    sn = load_supernet(out).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(sn(x, exits=["final"])["final"], source.eval()(x)["out"])


def test_user_mistakes_exit_2_with_one_line(tmp_path):
    import subprocess
    import sys

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "mess",
            "convert",
            "--model",
            "torchvision:vgg11",
            "-o",
            str(tmp_path / "x.pt"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: unknown torchvision model")
    assert "Traceback" not in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "mess", "inspect", str(tmp_path / "nope.pt")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
