import pytest
import torch

from mess.nn import build_model, model_flops, part_costs, to_supernet
from mess.space import FINAL


@pytest.mark.parametrize(
    "spec,size",
    [
        ("torchvision:deeplabv3_resnet50", (96, 128)),
        ("torchvision:lraspp_mobilenet_v3_large", (128, 96)),
        ("torchvision:deeplabv3_mobilenet_v3_large", (64, 64)),
        ("torchvision:resnet18", (64, 80)),
        ("torchvision:mobilenet_v2+deeplabv3", (96, 96)),
    ],
)
def test_segments_plus_final_head_equal_flop_counter_of_whole_model(spec, size):
    model = build_model(spec, num_classes=5)
    sn = to_supernet(model, space="tiny")
    costs = part_costs(sn, size)
    ours = sum(c.gflops for c in costs["segments"].values()) + costs["heads"][FINAL].gflops
    assert ours * 1e9 == pytest.approx(model_flops(model, size), rel=1e-9)


def test_every_part_has_a_cost_and_parameters_add_up():
    model = build_model("torchvision:resnet18", num_classes=5)
    sn = to_supernet(model, space="tiny")
    costs = part_costs(sn, (64, 64))
    assert list(costs["segments"]) == [p.name for p in sn.positions] + [FINAL]
    assert set(costs["heads"]) == set(sn.exit_ids)
    assert all(c.gflops > 0 for k, c in costs["heads"].items())
    backbone_and_final = sum(c.params for c in costs["segments"].values())
    backbone_and_final += costs["heads"][FINAL].params
    assert backbone_and_final == sum(p.numel() for p in model.parameters())
    heads = sum(c.params for k, c in costs["heads"].items() if k != FINAL)
    assert heads == sum(p.numel() for p in sn.exits.parameters())


def test_head_cost_matches_flop_counter_of_the_head_alone():
    from torch.utils.flop_counter import FlopCounterMode

    sn = to_supernet(build_model("torchvision:resnet18", num_classes=5), space="full").eval()
    costs = part_costs(sn, (64, 64))
    eid = "layer2.1/crm0-b3-rdi1-dlv3"
    feature = torch.zeros(1, sn.position_of(eid).channels, 8, 8)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        sn.exit_head(eid)(feature)
    assert costs["heads"][eid].gflops * 1e9 == pytest.approx(counter.get_total_flops())


def test_costs_scale_with_input_size():
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=5), space="tiny")
    small = part_costs(sn, (64, 64))["segments"]["layer3.0"].gflops
    large = part_costs(sn, (128, 128))["segments"]["layer3.0"].gflops
    assert large == pytest.approx(4 * small)
