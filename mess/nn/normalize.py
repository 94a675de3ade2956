"""Input normalisation of torchvision weights (ImageNet mean/std), as a module.

Datasets yield RGB in [0, 1]; the supernet expects normalised input, like the torchvision
model it came from. The exported tailored ONNX model carries this step inside its graph.
"""

from __future__ import annotations

import torch
from torch import nn

from mess.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # one definition, shared


class NormalizeLayer(nn.Module):
    """``(x - mean) / std`` per channel for ``[B, 3, H, W]`` images in [0, 1]."""

    def __init__(
        self,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
