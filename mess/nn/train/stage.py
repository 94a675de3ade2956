"""What the training loop needs from a stage (stage 1 and stage 2 implement it)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from mess.nn.supernet import Supernet
from mess.nn.train.distributed import Distributed


class Stage(Protocol):
    """What :func:`mess.nn.train.loop.fit` needs from a training stage."""

    name: str

    def setup(self, supernet: Supernet, device: torch.device, ctx: Distributed) -> None:
        """Freeze/unfreeze, move to ``device``, wrap in DDP when ``ctx.enabled``."""

    def parameters(self) -> list[nn.Parameter]:
        """The parameters the optimiser updates."""

    def train_mode(self) -> None:
        """Put modules in train/eval mode for an epoch."""

    def step(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        backward: Callable[[torch.Tensor], None],
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    ) -> float:
        """Forward one batch (inside ``autocast()``), call ``backward`` on each loss; mean loss."""

    def val_exits(self) -> list[str]:
        """Exits whose validation mIoU is reported."""

    def settings(self) -> dict[str, Any]:
        """The stage's own settings (stored in and checked against the checkpoint)."""

    def state_dict(self) -> dict[str, Any]:
        """RNG state of the stage's own sampling."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
