import json
import zipfile

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

from mess.bundle import read_bundle
from mess.cli import app
from mess.nn import SupernetFileError, build_model, load_supernet, to_supernet
from mess.nn.calibrate import calibrate
from mess.nn.runtime import infer
from mess.onnx import assemble
from mess.stats import Stats, save_stats

SIZE = (64, 64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=3), space="tiny").eval()
    sn.save(tmp / "sn.pt")
    data = TensorDataset(torch.rand(4, 3, *SIZE), torch.randint(0, 3, (4, *SIZE)))
    arrays = calibrate(sn, data, pixel_thresholds=[0.3, 0.5], batch_size=2)
    meta = json.loads(str(arrays.pop("meta")))
    save_stats(Stats(meta=meta, **arrays), tmp / "stats.npz")
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--supernet",
            str(tmp / "sn.pt"),
            "--stats",
            str(tmp / "stats.npz"),
            "--input-size",
            "64x64",
            "-o",
            str(tmp / "sn.mess"),
        ],
    )
    assert result.exit_code == 0, result.output
    return sn, tmp


def test_exported_bundle_passes_the_service_validation(exported, tmp_path):
    sn, tmp = exported
    bundle = read_bundle(tmp / "sn.mess", tmp_path)
    manifest = bundle.manifest
    assert manifest.supernet == sn.digest()
    assert [e.id for e in manifest.exits] == sn.early_exit_ids
    assert {"segment/final", "head/final"} <= set(manifest.parts)
    assert bundle.costs["unit"] == "gflops"


def test_a_bundle_leaves_the_weights_out_unless_asked(exported, tmp_path):
    sn, tmp = exported
    with zipfile.ZipFile(tmp / "sn.mess") as zf:
        assert "supernet.pt" not in zf.namelist()
    assert read_bundle(tmp / "sn.mess", tmp_path).manifest.weights is None
    with pytest.raises(SupernetFileError, match="bundle without supernet weights"):
        load_supernet(tmp / "sn.mess")


def test_load_supernet_reads_a_bundle_exported_with_weights(exported):
    sn, tmp = exported
    args = ["--supernet", str(tmp / "sn.pt"), "--stats", str(tmp / "stats.npz")]
    args += ["--input-size", "64x64", "--no-check", "--weights", "-o", str(tmp / "w.mess")]
    result = CliRunner().invoke(app, ["export", *args])
    assert result.exit_code == 0, result.output
    assert load_supernet(tmp / "w.mess").digest() == sn.digest()
    with zipfile.ZipFile(tmp / "sn.mess") as light, zipfile.ZipFile(tmp / "w.mess") as full:
        # the same parts byte for byte: only the weights member is added
        assert set(full.namelist()) - set(light.namelist()) == {"supernet.pt"}
        for name in light.namelist():
            if name != "manifest.json":
                assert light.read(name) == full.read(name), name


def test_assemble_from_the_bundle_matches_pytorch(exported):
    sn, tmp = exported
    config = {
        "exits": [{"id": sn.early_exit_ids[3], "pixel_threshold": 0.5, "image_threshold": 0.2}],
        "terminal": "final",
    }
    model = assemble(tmp / "sn.mess", config)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["mess.supernet"] == sn.digest()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = torch.rand(3, *SIZE)
    logits, exit_index = session.run(None, {"image": image[None].numpy()})
    ref, ref_exit = infer(sn, image, config)
    assert int(exit_index) == ref_exit
    assert np.abs(logits - ref.numpy()).max() <= 1e-4 * np.abs(ref.numpy()).max()


def test_assemble_and_run_commands(exported, tmp_path):
    sn, tmp = exported
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "configuration": {"exits": [], "terminal": sn.early_exit_ids[-1]},
                "miou": 0.5,
                "expected_cost": 1.0,
            }
        )
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["assemble", str(tmp / "sn.mess"), "--config", str(config), "-o", str(tmp_path / "m.onnx")],
    )
    assert result.exit_code == 0, result.output
    from PIL import Image

    Image.fromarray((np.random.rand(80, 90, 3) * 255).astype(np.uint8)).save(tmp_path / "x.png")
    result = runner.invoke(
        app,
        [
            "run",
            str(tmp_path / "m.onnx"),
            str(tmp_path / "x.png"),
            "-o",
            str(tmp_path / "mask.png"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["exit"] == 0 and sum(out["classes"]) == SIZE[0] * SIZE[1]
    assert Image.open(tmp_path / "mask.png").size == (SIZE[1], SIZE[0])


def test_stats_of_another_supernet_are_refused(exported, tmp_path):
    _, tmp = exported
    other = to_supernet(build_model("torchvision:resnet18", num_classes=3), space="tiny")
    other.save(tmp_path / "other.pt")
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--supernet",
            str(tmp_path / "other.pt"),
            "--stats",
            str(tmp / "stats.npz"),
            "--input-size",
            "64x64",
            "-o",
            str(tmp_path / "x.mess"),
        ],
    )
    assert result.exit_code != 0
    assert not (tmp_path / "x.mess").exists()
