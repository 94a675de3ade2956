"""The training loop shared by both MESS stages.

A stage (:class:`mess.nn.train.stage.Stage`) says which parameters train, which modules are in
train mode and how one batch turns into losses; :func:`fit` does the rest: seeding, data
loading (:mod:`mess.nn.train.loaders`), SGD/AdamW with a poly learning rate per iteration,
mixed precision on CUDA (``torch.autocast`` + ``GradScaler``), DDP when launched by
``torchrun``, validation mIoU from a confusion matrix, and a checkpoint after every epoch from
which ``resume`` continues exactly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mess.nn.normalize import NormalizeLayer
from mess.nn.supernet import Supernet
from mess.nn.train.checkpoint import resume_checkpoint, save_checkpoint
from mess.nn.train.config import TrainConfig
from mess.nn.train.distributed import (
    Distributed,
    cleanup_distributed,
    resolve_device,
    setup_distributed,
)
from mess.nn.train.evaluation import evaluate
from mess.nn.train.loaders import train_loader
from mess.nn.train.optim import build_optimizer, poly_scheduler
from mess.nn.train.rng import seed_everything
from mess.nn.train.stage import Stage

log = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    """One epoch of a run: mean training loss and validation mIoU per exit."""

    epoch: int
    loss: float
    val: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class StopTraining(Exception):
    """Raised by an ``on_epoch_end`` callback to stop after a checkpoint (tests, schedulers)."""


def fit(
    supernet: Supernet,
    stage: Stage,
    train_set: Dataset,
    *,
    config: TrainConfig,
    val_set: Dataset | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
) -> list[EpochRecord]:
    """Train ``supernet`` in place with ``stage``.

    Args:
        supernet: trained in place (its weights end on the training device).
        stage: what is trained and how (:class:`mess.nn.train.stage.Stage`).
        train_set: yields ``(image [3,H,W] in [0,1], mask [H,W] int64, 255 = ignore)``.
        config: loop settings.
        val_set: validation split (mIoU after each epoch), or None.
        checkpoint: where to write a checkpoint after each epoch (rank 0), or None.
        resume: continue from ``checkpoint`` (must exist and match the settings).
        on_epoch_end: called after each epoch's checkpoint; may raise :class:`StopTraining`.

    Returns:
        The record of every epoch (those of the resumed run included).
    """
    ctx = setup_distributed(config.device)
    try:
        return _fit(
            supernet, stage, train_set, config, val_set, checkpoint, resume, on_epoch_end, ctx
        )
    finally:
        cleanup_distributed(ctx)


def _fit(
    supernet: Supernet,
    stage: Stage,
    train_set: Dataset,
    config: TrainConfig,
    val_set: Dataset | None,
    checkpoint: str | Path | None,
    resume: bool,
    on_epoch_end: Callable[[EpochRecord], None] | None,
    ctx: Distributed,
) -> list[EpochRecord]:
    device = resolve_device(config.device, ctx)
    seed_everything(config.seed)
    supernet.to(device)
    stage.setup(supernet, device, ctx)
    params = stage.parameters()
    if not params:
        raise ValueError(f"{stage.name}: nothing to train")
    loader, sampler = train_loader(train_set, config, ctx, device)
    optimizer = build_optimizer(params, config)
    scheduler = poly_scheduler(optimizer, config.epochs * len(loader))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device.type, dtype=torch.float16, enabled=use_amp)

    history: list[EpochRecord] = []
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume:
        if ckpt is None or not ckpt.is_file():
            raise ValueError(f"cannot resume: no checkpoint {ckpt}")
        start, records = resume_checkpoint(
            ckpt,
            stage=stage,
            config=config,
            supernet=supernet,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
        )
        history = [EpochRecord(**r) for r in records]
        log.info("resumed %s from %s after epoch %d", stage.name, ckpt, start)

    normalize = NormalizeLayer().to(device)
    show = config.progress and ctx.is_main
    for epoch in range(start, config.epochs):
        sampler.set_epoch(epoch)
        stage.train_mode()
        total, count = 0.0, 0
        bar = _progress(
            loader,
            enabled=show,
            desc=f"{stage.name} {epoch + 1}/{config.epochs}",
            total=len(loader),
        )
        for images, masks in bar:
            images = normalize(images.to(device, non_blocking=True))
            masks = masks.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = stage.step(images, masks, lambda t: scaler.scale(t).backward(), autocast)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total, count = total + loss, count + 1
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.close()
        record = EpochRecord(epoch=epoch + 1, loss=total / max(count, 1))
        if val_set is not None and ctx.is_main:
            record.val = evaluate(
                supernet, val_set, stage.val_exits(), batch_size=config.batch_size, device=device
            )
        history.append(record)
        if ctx.is_main:
            _log_epoch(stage.name, record, config.epochs, show)
            if ckpt is not None:
                save_checkpoint(
                    ckpt,
                    stage=stage,
                    epoch=epoch + 1,
                    config=config,
                    supernet=supernet,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    history=[r.to_json() for r in history],
                )
        ctx.barrier()
        if on_epoch_end is not None:
            on_epoch_end(record)
    return history


def _progress(iterable: Any, *, enabled: bool, desc: str, total: int) -> Any:
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False, unit="batch")


def _log_epoch(name: str, record: EpochRecord, epochs: int, show: bool) -> None:
    text = f"{name} epoch {record.epoch}/{epochs}: loss {record.loss:.4f}"
    if record.val:
        early = [v for k, v in record.val.items() if k != "final"]
        if "final" in record.val:
            text += f", val mIoU final {record.val['final']:.4f}"
        if early:
            text += f", early exits mean {np.mean(early):.4f} best {max(early):.4f}"
    if show:
        tqdm.write(text)
    log.info(text)
