import pytest
import torch
from torch import nn

from mess.nn import build_model, segmentation_model, to_supernet
from mess.nn.models import BACKBONES, SEGMENTATION_MODELS, SourceError
from mess.space import FINAL, resolve_space

ALL_SPECS = [f"torchvision:{n}" for n in SEGMENTATION_MODELS + BACKBONES]
ALL_SPECS += ["torchvision:resnet50+deeplabv3", "torchvision:mobilenet_v3_small+deeplabv3"]


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_final_exit_is_bit_identical_to_the_source_model(spec):
    torch.manual_seed(0)
    model = build_model(spec, num_classes=7).eval()
    sn = to_supernet(model, space="tiny").eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        expected = model(x)["out"]
        got = sn(x, exits=[FINAL])[FINAL]
    assert got.dtype == expected.dtype
    assert torch.equal(got, expected)


def test_final_exit_equality_holds_in_train_mode_too():
    torch.manual_seed(0)
    model = build_model("torchvision:lraspp_mobilenet_v3_large", num_classes=3).train()
    sn = to_supernet(model, space="tiny").train()
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(sn(x, exits=[FINAL])[FINAL], model(x)["out"])


def test_resnet50_positions_are_the_16_bottlenecks_in_depth_order():
    sn = to_supernet(build_model("torchvision:deeplabv3_resnet50", num_classes=19), space="tiny")
    names = [p.name for p in sn.positions]
    expected = [
        f"layer{i}.{j}" for i, n in zip(range(1, 5), (3, 4, 6, 3), strict=True) for j in range(n)
    ]
    assert names == expected
    assert [p.index for p in sn.positions] == list(range(16))
    assert {p.name: p.channels for p in sn.positions}["layer3.5"] == 1024
    assert [p.stride for p in sn.positions] == [4] * 3 + [8] * 13  # dilated, output stride 8


def test_mobilenet_positions_are_the_inverted_residual_blocks():
    sn = to_supernet(build_model("torchvision:lraspp_mobilenet_v3_large", num_classes=3))
    assert [p.name for p in sn.positions] == [f"features.{i}" for i in range(1, 16)]
    assert sn.positions[-1].channels == 160 and sn.positions[-1].stride == 16


def test_exit_ids_cover_every_position_and_head_then_final():
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=4), space="full")
    assert len(sn.exit_ids) == 8 * 36 + 1
    assert sn.exit_ids[-1] == FINAL
    assert sn.exit_ids[0] == f"layer1.0/{resolve_space('full')[0].id}"
    assert len(set(sn.exit_ids)) == len(sn.exit_ids)


def test_forward_returns_every_exit_at_input_resolution(resnet18_pair):
    _, sn = resnet18_pair
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        out = sn(x)
    assert list(out) == sn.exit_ids
    for logits in out.values():
        assert logits.shape == (1, 5, 64, 48)


def test_forward_without_upsampling_gives_head_resolution(resnet18_pair):
    _, sn = resnet18_pair
    x = torch.randn(1, 3, 64, 64)
    eid = "layer1.0/crm1-b0-rdi0-fcn"
    with torch.no_grad():
        out = sn(x, exits=[eid], upsample=False)
    assert out[eid].shape == (1, 5, 16, 16)  # layer1 has output stride 4


class _Explode(nn.Module):
    def forward(self, x):
        raise AssertionError("this segment must not run")


def test_forward_runs_the_backbone_only_as_deep_as_needed():
    torch.manual_seed(0)
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=3), space="tiny").eval()
    for i in range(3, len(sn.segments)):
        sn.segments[i] = _Explode()
    sn.final_segment = _Explode()
    with torch.no_grad():
        out = sn(torch.randn(1, 3, 32, 32), exits=["layer2.0/crm1-b1-rdi0-fcn"])
    assert set(out) == {"layer2.0/crm1-b1-rdi0-fcn"}
    with pytest.raises(AssertionError, match="must not run"):
        sn(torch.randn(1, 3, 32, 32), exits=["layer3.0/crm1-b1-rdi0-fcn"])


def test_exits_share_one_backbone_pass(resnet18_pair):
    _, sn = resnet18_pair
    calls = []
    handle = sn.segments[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            sn(torch.randn(1, 3, 32, 32))
    finally:
        handle.remove()
    assert len(calls) == 1


def test_unknown_exit_ids_are_refused(resnet18_pair):
    _, sn = resnet18_pair
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(KeyError, match="no position"):
        sn(x, exits=["layer9.0/crm1-b0-rdi0-fcn"])
    with pytest.raises(KeyError, match="not in this supernet's space"):
        sn(x, exits=["layer1.0/crm0-b4-rdi1-dlv3"])


def test_conversion_does_not_modify_the_source_model():
    torch.manual_seed(0)
    model = build_model("torchvision:resnet18", num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sn = to_supernet(model, space="tiny", num_classes=6)
    for p in sn.parameters():
        p.data.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_num_classes_replaces_the_original_output_layer():
    model = build_model("torchvision:fcn_resnet50", num_classes=21)
    sn = to_supernet(model, space="tiny", num_classes=4).eval()
    with torch.no_grad():
        out = sn(torch.randn(1, 3, 32, 32))
    assert {v.shape[1] for v in out.values()} == {4}
    assert sn.source["num_classes"] == 4


def test_classification_backbone_gets_a_segmentation_head():
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    backbone = mobilenet_v2(weights=None)
    sn = to_supernet(backbone, space="tiny", num_classes=5, head="deeplabv3").eval()
    reference = segmentation_model(backbone, head="deeplabv3", num_classes=5).eval()
    sn.final_head.load_state_dict(
        {"classifier." + k: v for k, v in reference.classifier.state_dict().items()}
    )
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(sn(x, exits=[FINAL])[FINAL], reference(x)["out"])


def test_unsupported_models_are_refused_with_a_clear_message():
    with pytest.raises(SourceError, match="unsupported model"):
        to_supernet(nn.Linear(3, 3))
    with pytest.raises(SourceError, match="unknown torchvision model"):
        build_model("torchvision:vgg16")
    with pytest.raises(SourceError, match="output_stride"):
        segmentation_model("resnet18", output_stride=4)
