"""Stage 1: exit-aware backbone training.

The backbone is trained end to end with the final exit and one early exit per iteration; the
early exit changes from iteration to iteration (drawn from a seeded generator over a set of
light candidate exits), so that features early in the network become semantically strong.
Loss: ``CE(final) + exit_weight * CE(early exit)``.

``joint=True`` instead trains every candidate exit at every iteration with
``CE(final) + exit_weight * mean(CE(exits))``: the end-to-end multi-exit baseline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mess.nn.supernet import Supernet
from mess.nn.train.config import TrainConfig
from mess.nn.train.distributed import Distributed
from mess.nn.train.loop import EpochRecord, fit
from mess.nn.train.losses import cross_entropy
from mess.space import FINAL, exit_id

# The lightest head of the full space (a 1x1 channel reduction then the FCN head).
DEFAULT_HEAD = "crm1-b0-rdi0-fcn"


def lightest_head(supernet: Supernet) -> str:
    """The head of the space with the fewest parameters summed over all positions.

    ``crm1-b0-rdi0-fcn`` when the space holds it (the lightest by construction).
    """
    ids = [h.id for h in supernet.heads]
    if DEFAULT_HEAD in ids:
        return DEFAULT_HEAD

    def size(head: str) -> int:
        return sum(
            p.numel()
            for pos in supernet.positions
            for p in supernet.exits[str(pos.index)][head].parameters()
        )

    return min(ids, key=size)


def candidate_exits(supernet: Supernet, heads: Sequence[str] | None = None) -> list[str]:
    """Early exits stage 1 samples from: ``heads`` (default: the lightest) at every position."""
    chosen = list(heads) if heads else [lightest_head(supernet)]
    space = {h.id for h in supernet.heads}
    unknown = [h for h in chosen if h not in space]
    if unknown:
        raise ValueError(f"head {unknown[0]!r} is not in this supernet's space")
    return [exit_id(p.name, h) for p in supernet.positions for h in chosen]


@dataclass
class Stage1:
    """Exit-aware backbone training (see the module docstring).

    Args:
        exits: candidate early exits (default: :func:`candidate_exits`); empty with
            ``exit_weight=0`` trains backbone + final alone.
        exit_weight: weight ``w`` of the early-exit loss.
        joint: train all candidate exits every iteration (end-to-end baseline).
        seed: seed of the exit-sampling generator.
    """

    exits: Sequence[str] | None = None
    exit_weight: float = 1.0
    joint: bool = False
    seed: int = 0
    name: str = "stage1"

    def setup(self, supernet: Supernet, device: torch.device, ctx: Distributed) -> None:
        self.supernet = supernet
        if self.exits is None:
            self.exits = candidate_exits(supernet)
        self.exits = list(self.exits)
        for eid in self.exits:
            supernet.exit_head(eid)  # validates
        if self.exit_weight > 0 and not self.exits:
            raise ValueError("stage 1 needs at least one candidate exit (or exit_weight=0)")
        self._rng = torch.Generator().manual_seed(self.seed)
        trained = self._trained_modules()
        supernet.requires_grad_(False)
        for m in trained:
            m.requires_grad_(True)
        self.net: nn.Module = supernet
        if ctx.enabled:
            # Only one of the candidate exits runs per iteration: the others are unused.
            self.net = DistributedDataParallel(
                supernet,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=not self.joint,
            )

    def _trained_modules(self) -> list[nn.Module]:
        sn = self.supernet
        mods: list[nn.Module] = [sn.segments, sn.final_segment, sn.final_head]
        if self.exit_weight > 0:
            mods += [sn.exit_head(e) for e in self.exits or ()]
        return mods

    def parameters(self) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for m in self._trained_modules():
            for p in m.parameters():
                seen.setdefault(id(p), p)
        return list(seen.values())

    def train_mode(self) -> None:
        self.supernet.train()

    def _sample(self) -> list[str]:
        assert self.exits is not None
        if self.exit_weight <= 0:
            return []
        if self.joint:
            return list(self.exits)
        i = int(torch.randint(len(self.exits), (1,), generator=self._rng))
        return [self.exits[i]]

    def step(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        backward: Callable[[torch.Tensor], None],
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    ) -> float:
        early = self._sample()
        with autocast():
            out = self.net(images, exits=[*early, FINAL])
        loss = cross_entropy(out[FINAL], masks)
        if early:
            exit_loss = torch.stack([cross_entropy(out[e], masks) for e in early]).mean()
            loss = loss + self.exit_weight * exit_loss
        backward(loss)
        return float(loss.detach())

    def val_exits(self) -> list[str]:
        return [*(self.exits or []), FINAL] if self.exit_weight > 0 else [FINAL]

    def settings(self) -> dict[str, Any]:
        return {
            "exits": list(self.exits or []),
            "exit_weight": self.exit_weight,
            "joint": self.joint,
            "seed": self.seed,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self._rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.set_state(state["sampler"])


def train_stage1(
    supernet: Supernet,
    train_set: torch.utils.data.Dataset,
    *,
    config: TrainConfig,
    val_set: torch.utils.data.Dataset | None = None,
    exits: Sequence[str] | None = None,
    exit_heads: Sequence[str] | None = None,
    exit_weight: float = 1.0,
    joint: bool = False,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
) -> list[EpochRecord]:
    """Stage 1 of MESS on ``supernet`` (in place).

    Args:
        supernet: the supernet to train.
        train_set: training split.
        config: loop settings (:class:`TrainConfig`).
        val_set: validation split for the per-epoch mIoU.
        exits: candidate early exit ids (overrides ``exit_heads``).
        exit_heads: head ids placed at every position as candidates (default: the lightest).
        exit_weight: weight of the early-exit loss.
        joint: all candidates every iteration (end-to-end baseline) instead of one sampled.
        checkpoint: checkpoint file written after each epoch.
        resume: continue from ``checkpoint``.
        on_epoch_end: callback after each epoch.

    Returns:
        The per-epoch records.

    Example:
        >>> train_stage1(sn, train, config=TrainConfig(epochs=2, batch_size=8), val_set=val)
    """
    if exits is None and (exit_weight > 0 or exit_heads):
        exits = candidate_exits(supernet, exit_heads)
    stage = Stage1(
        exits=exits if exits is not None else [],
        exit_weight=exit_weight,
        joint=joint,
        seed=config.seed,
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
