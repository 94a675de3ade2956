"""Stage 2: frozen-backbone training of every candidate exit.

The backbone and the final exit are frozen and stay in eval mode (BN running statistics do not
move). Each batch runs the backbone once, without gradients, up to the final exit; every
candidate head then trains on the shared features with positive filtering distillation
(:func:`mess.nn.train.losses.positive_filtering_loss`). ``heads_per_step`` splits the heads into
groups that run forward and backward one after the other, for memory; the backbone pass is
still shared by all groups. The optimiser steps once per batch. A group that runs out of GPU
memory is run again in halves, and later steps keep the smaller groups (single process; the
heads are independent, so the gradients do not depend on the grouping).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mess.nn.supernet import Supernet
from mess.nn.train.config import TrainConfig
from mess.nn.train.distributed import Distributed
from mess.nn.train.loop import EpochRecord, fit
from mess.nn.train.losses import Teacher, positive_filtering_loss
from mess.space import FINAL

log = logging.getLogger(__name__)


def upsample(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of logits to the label size (torchvision's convention)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class ExitBank(nn.Module):
    """The early-exit heads of a supernet as one module (what DDP wraps in stage 2).

    ``forward(features, exits, size)`` returns the upsampled logits of ``exits`` computed
    from precomputed backbone ``features`` (by position index).
    """

    def __init__(self, supernet: Supernet) -> None:
        super().__init__()
        self.exits = supernet.exits  # shared, not copied
        self._position = {eid: supernet.position_of(eid).index for eid in supernet.early_exit_ids}
        self._head = {eid: eid.rpartition("/")[2] for eid in supernet.early_exit_ids}

    def forward(
        self, features: dict[int, torch.Tensor], exits: Sequence[str], size: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        out = {}
        for eid in exits:
            pos = self._position[eid]
            out[eid] = upsample(self.exits[str(pos)][self._head[eid]](features[pos]), size)
        return out


@dataclass
class Stage2:
    """Frozen-backbone head training (see the module docstring).

    Args:
        exits: early exits to train (default: every exit of the space).
        distill_weight: weight of the distillation term (0: labels only).
        temperature: distillation temperature ``T``.
        heads_per_step: heads per forward/backward group (0: all at once).
    """

    exits: Sequence[str] | None = None
    distill_weight: float = 1.0
    temperature: float = 2.0
    heads_per_step: int = 0
    name: str = "stage2"

    def setup(self, supernet: Supernet, device: torch.device, ctx: Distributed) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        self.supernet = supernet
        self.exits = list(self.exits) if self.exits is not None else supernet.early_exit_ids
        for eid in self.exits:
            if eid == FINAL:
                raise ValueError("stage 2 trains early exits; 'final' stays frozen")
            supernet.exit_head(eid)  # validates
        positions = {supernet.position_of(e).index for e in self.exits}
        self._positions = sorted(positions)
        supernet.requires_grad_(False)
        for eid in self.exits:
            supernet.exit_head(eid).requires_grad_(True)
        bank = ExitBank(supernet)
        self.bank: nn.Module = bank
        self._distributed = ctx.enabled
        self._group = self.heads_per_step  # what steps use: halved after running out of memory
        if ctx.enabled:
            grouped = 0 < self.heads_per_step < len(self.exits)
            partial = len(self.exits) < len(supernet.early_exit_ids)
            self.bank = DistributedDataParallel(
                bank,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=grouped or partial,
            )

    @property
    def heads_per_group(self) -> int:
        """Heads per forward/backward group that steps use now (after any halving)."""
        n = len(self.exits or ())
        return self._group if 0 < self._group < n else n

    def parameters(self) -> list[nn.Parameter]:
        return [p for e in self.exits or () for p in self.supernet.exit_head(e).parameters()]

    def train_mode(self) -> None:
        sn = self.supernet
        sn.train()
        # Frozen parts in eval mode: BN uses and keeps its running statistics.
        for m in (sn.segments, sn.final_segment, sn.final_head):
            m.eval()
        for eid in sn.early_exit_ids:
            if eid not in set(self.exits or ()):
                sn.exit_head(eid).eval()

    def step(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        backward: Callable[[torch.Tensor], None],
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    ) -> float:
        size = masks.shape[-2:]
        with torch.no_grad(), autocast():  # one backbone pass serves every head
            features, final_logits = self.supernet.forward_features(
                images, self._positions, final=True
            )
            assert final_logits is not None
            teacher = upsample(final_logits, size).float()
        with torch.no_grad():  # the teacher's side of the distillation, once for every head
            soft = (
                Teacher.positive(teacher, masks, self.temperature) if self.distill_weight else None
            )
        pending = list(self.exits or ())
        total = 0.0
        while pending:
            n = self.heads_per_group
            group = pending[:n]
            try:
                total += self._train_group(
                    group, features, teacher, soft, masks, backward, autocast
                )
            except torch.cuda.OutOfMemoryError:
                if self._distributed or n <= 1:
                    raise
            else:
                pending = pending[n:]
                continue
            # Outside the handler, so that the failed try's tensors are freed first. The groups
            # done keep their gradients; the failed one is run again from no gradient, in
            # halves. (Stopped mid-way, its BN statistics have seen this batch once more and its
            # dropout draws differ from a clean run's.)
            for e in group:
                for p in self.supernet.exit_head(e).parameters():
                    p.grad = None
            torch.cuda.empty_cache()
            self._group = n // 2
            log.warning(
                "stage 2: out of GPU memory with %d heads per group; %d from now on",
                n,
                self._group,
            )
        return total / max(len(self.exits or ()), 1)

    def _train_group(
        self,
        group: list[str],
        features: dict[int, torch.Tensor],
        teacher: torch.Tensor,
        soft: Teacher | None,
        masks: torch.Tensor,
        backward: Callable[[torch.Tensor], None],
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    ) -> float:
        """Forward and backward of one group of heads; the sum of their losses."""
        with autocast():
            out = self.bank(features, group, masks.shape[-2:])
        losses = [
            positive_filtering_loss(
                out[e],
                teacher,
                masks,
                temperature=self.temperature,
                weight=self.distill_weight,
                teacher=soft,
            )
            for e in group
        ]
        # A sum: each head gets its own loss's gradient, whatever the group size.
        loss = torch.stack(losses).sum()
        backward(loss)
        return float(loss.detach())

    def val_exits(self) -> list[str]:
        return [*(self.exits or []), FINAL]

    def settings(self) -> dict[str, Any]:
        return {
            "exits": list(self.exits or []),
            "distill_weight": self.distill_weight,
            "temperature": self.temperature,
            "heads_per_step": self.heads_per_step,
        }

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def train_stage2(
    supernet: Supernet,
    train_set: torch.utils.data.Dataset,
    *,
    config: TrainConfig,
    val_set: torch.utils.data.Dataset | None = None,
    exits: Sequence[str] | None = None,
    distill_weight: float = 1.0,
    temperature: float = 2.0,
    heads_per_step: int = 0,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
) -> list[EpochRecord]:
    """Stage 2 of MESS on ``supernet`` (in place): every candidate head, backbone frozen.

    Args:
        supernet: the supernet after stage 1.
        train_set: training split.
        config: loop settings (:class:`TrainConfig`).
        val_set: validation split for the per-epoch mIoU.
        exits: early exits to train (default: all of the space).
        distill_weight: weight of positive filtering distillation (0: labels only).
        temperature: distillation temperature.
        heads_per_step: heads per forward/backward group (0: all at once).
        checkpoint: checkpoint file written after each epoch.
        resume: continue from ``checkpoint``.
        on_epoch_end: callback after each epoch.

    Returns:
        The per-epoch records (validation mIoU of every trained exit and ``final``).
    """
    stage = Stage2(
        exits=exits,
        distill_weight=distill_weight,
        temperature=temperature,
        heads_per_step=heads_per_step,
    )
    return fit(
        supernet,
        stage,
        train_set,
        config=config,
        val_set=val_set,
        checkpoint=checkpoint,
        resume=resume,
        on_epoch_end=on_epoch_end,
    )
