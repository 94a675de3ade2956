import pytest
import torch

from mess.nn import SupernetFileError, build_model, load_supernet, to_supernet
from mess.nn.checkpoints import CheckpointError, load_checkpoint
from mess.nn.heads import HeadWidths


def _outputs(sn, x):
    sn.eval()
    with torch.no_grad():
        return sn(x)


def test_save_and_load_round_trip_weights_and_description(tmp_path):
    torch.manual_seed(0)
    sn = to_supernet(
        build_model("torchvision:lraspp_mobilenet_v3_large", num_classes=4),
        space="crm1-b2-rdi1-dlv3,crm0-b0-rdi0-fcn",
        widths=HeadWidths(crm=32, block=16, head=24),
    )
    digest = sn.save(tmp_path / "sn.pt")
    loaded = load_supernet(tmp_path / "sn.pt")
    assert loaded.digest() == digest
    assert loaded.exit_ids == sn.exit_ids
    assert loaded.positions == sn.positions
    assert loaded.widths == sn.widths
    x = torch.randn(1, 3, 64, 64)
    a, b = _outputs(sn, x), _outputs(loaded, x)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def saved(tmp_path):
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=3), space="tiny")
    path = tmp_path / "sn.pt"
    sn.save(path)
    return path


def _rewrite(path, mutate):
    payload = torch.load(path, weights_only=True)
    mutate(payload)
    torch.save(payload, path)


def test_unknown_version_fails_with_one_line(saved):
    _rewrite(saved, lambda p: p.update(version=99))
    with pytest.raises(SupernetFileError, match="unsupported mess-supernet version 99"):
        load_supernet(saved)


def test_missing_tensor_is_named(saved):
    _rewrite(saved, lambda p: p["state_dict"].pop("segments.0.0.weight"))
    with pytest.raises(SupernetFileError, match=r"missing tensor 'segments.0.0.weight'"):
        load_supernet(saved)


def test_misshaped_tensor_is_named(saved):
    def shrink(p):
        p["state_dict"]["final_head.classifier.4.bias"] = torch.zeros(2)

    _rewrite(saved, shrink)
    with pytest.raises(SupernetFileError, match=r"final_head.classifier.4.bias.*shape \(2,\)"):
        load_supernet(saved)


def test_garbage_and_missing_files_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SupernetFileError, match="not a MESS supernet file"):
        load_supernet(bad)
    with pytest.raises(SupernetFileError, match="no such file"):
        load_supernet(tmp_path / "absent.pt")
    torch.save({"weights": 1}, bad)
    with pytest.raises(SupernetFileError, match="format"):
        load_supernet(bad)


def test_segmentation_checkpoint_loads_and_aux_head_is_ignored(tmp_path):
    from torchvision.models.segmentation import fcn_resnet50

    torch.manual_seed(1)
    trained = fcn_resnet50(weights=None, weights_backbone=None, num_classes=3, aux_loss=True)
    torch.save(trained.state_dict(), tmp_path / "ckpt.pth")
    model = build_model("torchvision:fcn_resnet50", num_classes=3)
    load_checkpoint(model, tmp_path / "ckpt.pth")
    sn = to_supernet(model, space="tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(sn(x, exits=["final"])["final"], trained.eval()(x)["out"])


def test_classification_checkpoint_loads_into_the_backbone(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(2)
    classifier = resnet18(weights=None)
    torch.save({"state_dict": classifier.state_dict()}, tmp_path / "r18.pth")
    model = build_model("torchvision:resnet18", num_classes=3)
    load_checkpoint(model, tmp_path / "r18.pth")
    assert torch.equal(model.backbone.conv1.weight, classifier.conv1.weight)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, classifier.layer4[1].conv2.weight)


def test_checkpoint_of_the_wrong_shape_is_refused(tmp_path):
    from torchvision.models.segmentation import fcn_resnet50

    torch.save(
        fcn_resnet50(weights=None, weights_backbone=None, num_classes=21).state_dict(),
        tmp_path / "c.pth",
    )
    model = build_model("torchvision:fcn_resnet50", num_classes=3)
    with pytest.raises(CheckpointError, match="wrong --num-classes"):
        load_checkpoint(model, tmp_path / "c.pth")
