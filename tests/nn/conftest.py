import pytest
import torch

from mess.nn import build_model, to_supernet


@pytest.fixture(scope="module")
def resnet18_pair():
    """A small random-init source model and its tiny-space supernet, in eval mode."""
    torch.manual_seed(0)
    model = build_model("torchvision:resnet18", num_classes=5).eval()
    return model, to_supernet(model, space="tiny").eval()
