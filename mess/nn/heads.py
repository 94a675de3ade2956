"""Early-exit heads: small ``nn.Sequential`` modules built from a :class:`HeadConfig`.

Heads are light by design (that is the point of an early exit). Widths:

- CRM: 1x1 conv to ``widths.crm`` channels (default 128) + BN + ReLU;
- extra blocks: residual bottlenecks ``w -> widths.block -> w`` (default inner width 64) with
  a 3x3 conv whose dilation is 1, or with RDI 2, 4, 8, 16 for blocks 1..4;
- FCN head: 3x3 conv to ``widths.head`` (default 64) + BN + ReLU + 1x1 classifier;
- DeepLabV3 head: torchvision's ASPP (rates 6, 12, 18) to ``widths.head`` channels + 3x3 conv +
  BN + ReLU + 1x1 classifier.

Logits come out at the resolution of the exit's position (its output stride).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from mess.space import HeadConfig

ASPP_RATES = (6, 12, 18)


@dataclass(frozen=True)
class HeadWidths:
    """Channel widths shared by every exit head of a supernet."""

    crm: int = 128
    block: int = 64
    head: int = 64

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> HeadWidths:
        return cls(**(data or {}))


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> list[nn.Module]:
    padding = dilation * (kernel // 2)
    return [
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class ResidualBlock(nn.Module):
    """Bottleneck residual block ``channels -> inner -> channels`` with a dilated 3x3 conv."""

    def __init__(self, channels: int, inner: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(channels, inner, 1),
            *_conv_bn_relu(inner, inner, 3, dilation),
            nn.Conv2d(inner, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.body(x))


class ExitHead(nn.Sequential):
    """An early-exit head: [CRM] -> [blocks] -> FCN or DeepLabV3 head -> logits.

    Args:
        config: the head's architecture.
        in_channels: channels of the position it is attached to.
        num_classes: number of output classes.
        widths: channel widths.

    Example:
        >>> head = ExitHead(HeadConfig.parse("crm1-b2-rdi1-dlv3"), in_channels=256, num_classes=19)
        >>> head(torch.rand(2, 256, 16, 16)).shape
        torch.Size([2, 19, 16, 16])
    """

    def __init__(
        self,
        config: HeadConfig,
        *,
        in_channels: int,
        num_classes: int,
        widths: HeadWidths | None = None,
    ) -> None:
        widths = widths or HeadWidths()
        layers: list[nn.Module] = []
        width = in_channels
        if config.crm:
            layers.append(nn.Sequential(*_conv_bn_relu(in_channels, widths.crm, 1)))
            width = widths.crm
        for i in range(config.blocks):
            dilation = 2 ** (i + 1) if config.rdi else 1
            layers.append(ResidualBlock(width, min(widths.block, width), dilation))
        if config.head == "fcn":
            layers.extend(_conv_bn_relu(width, widths.head, 3))
        else:
            layers.append(ASPP(width, list(ASPP_RATES), widths.head))
            layers.extend(_conv_bn_relu(widths.head, widths.head, 3))
        layers.append(nn.Conv2d(widths.head, num_classes, 1))
        super().__init__(*layers)
        self.config = config
