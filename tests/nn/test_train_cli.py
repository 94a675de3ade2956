import json

import pytest
import torch
from typer.testing import CliRunner

from mess.cli import app
from mess.cli._app import UserError
from mess.nn import HeadWidths, build_model, load_supernet, to_supernet


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models on a shared 2-core box: one thread avoids oversubscription stalls.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def supernet_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sn") / "sn.pt"
    sn = to_supernet(
        build_model("torchvision:resnet18", num_classes=4),
        space="crm1-b0-rdi0-fcn",
        widths=HeadWidths(crm=16, block=8, head=8),
    )
    sn.save(path)
    return path


def _args(stage, supernet, out, *extra):
    return [
        "train",
        stage,
        "--supernet",
        str(supernet),
        "--data",
        "synth:4",
        "--size",
        "32x32",
        "--train-length",
        "4",
        "--val-length",
        "2",
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        "-o",
        str(out),
        *extra,
    ]


def test_train_stage1_then_stage2_write_loadable_supernets(supernet_file, tmp_path):
    runner = CliRunner()
    s1 = tmp_path / "s1.pt"
    result = runner.invoke(app, _args("stage1", supernet_file, s1, "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["epochs"][0]["epoch"] == 1 and "final" in report["epochs"][0]["val"]
    assert (tmp_path / "s1.pt.ckpt").is_file()
    before = load_supernet(s1)
    assert before.digest() != load_supernet(supernet_file).digest()

    s2 = tmp_path / "s2.pt"
    result = runner.invoke(app, _args("stage2", s1, s2, "--temperature", "3"))
    assert result.exit_code == 0, result.output
    assert f"wrote {s2}" in result.output
    after = load_supernet(s2)
    assert torch.equal(after.segments[0][0].weight, before.segments[0][0].weight)
    assert after.digest() != before.digest()


def test_train_resume_without_checkpoint_is_a_user_error(supernet_file, tmp_path):
    result = CliRunner().invoke(app, _args("stage1", supernet_file, tmp_path / "x.pt", "--resume"))
    assert isinstance(result.exception, UserError)
    assert "no checkpoint" in str(result.exception)
