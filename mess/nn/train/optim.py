"""The optimiser and its poly learning-rate schedule."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mess.nn.train.config import TrainConfig

POLY_POWER = 0.9


def build_optimizer(params: Sequence[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (segmentation's usual choice) or AdamW."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def poly_scheduler(
    optimizer: torch.optim.Optimizer, total_iters: int, power: float = POLY_POWER
) -> torch.optim.lr_scheduler.PolynomialLR:
    """``lr * (1 - it / total) ** power``, stepped once per iteration."""
    return torch.optim.lr_scheduler.PolynomialLR(
        optimizer, total_iters=max(total_iters, 1), power=power
    )
