"""The training checkpoint: written after every epoch, read back to resume exactly."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mess.fileio import atomic_write
from mess.nn.supernet import Supernet
from mess.nn.train.config import TrainConfig
from mess.nn.train.rng import rng_state, set_rng_state
from mess.nn.train.stage import Stage

CHECKPOINT_FORMAT = "mess-train-checkpoint"
CHECKPOINT_VERSION = 1
# Settings a resumed run must share with the run that wrote the checkpoint.
RESUME_KEYS = ("epochs", "batch_size", "lr", "optimizer", "seed", "momentum", "weight_decay")


def checkpoint_path(output: str | Path) -> Path:
    """The checkpoint file of an output supernet: ``OUT.ckpt``."""
    output = Path(output)
    return output.with_name(output.name + ".ckpt")


def save_checkpoint(
    path: Path,
    *,
    stage: Stage,
    epoch: int,
    config: TrainConfig,
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    history: list[dict[str, Any]],
) -> None:
    """Write everything a resumed run needs after ``epoch`` epochs, the global RNGs included.

    Args:
        path: the checkpoint file.
        stage: the stage trained (its name, settings and sampling state).
        epoch: epochs done.
        config: the loop settings.
        supernet: the model (saved on the CPU).
        optimizer: its state.
        scheduler: its state.
        scaler: its state.
        history: the epoch records so far, as JSON.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "stage": stage.name,
        "epoch": epoch,
        "config": asdict(config),
        "stage_settings": stage.settings(),
        "model": {k: v.detach().cpu() for k, v in supernet.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "stage_state": stage.state_dict(),
        "rng": rng_state(),
        "history": history,
    }
    with atomic_write(path) as fh:  # a crash mid-write never leaves a truncated checkpoint
        torch.save(payload, fh)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only``); ValueError when it is not one."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a MESS training checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {payload.get('version')!r}")
    return payload


def check_resumable(payload: dict[str, Any], stage: Stage, config: TrainConfig, path: Path) -> None:
    """ValueError unless ``payload`` was written by ``stage`` with the same settings."""
    if payload["stage"] != stage.name:
        raise ValueError(f"{path}: checkpoint of {payload['stage']}, not {stage.name}")
    saved = payload["config"]
    for key in RESUME_KEYS:
        if saved.get(key) != getattr(config, key):
            raise ValueError(
                f"{path}: checkpoint made with {key}={saved.get(key)!r}, this run has "
                f"{key}={getattr(config, key)!r}"
            )
    if payload["stage_settings"] != stage.settings():
        raise ValueError(f"{path}: checkpoint made with other stage settings")


def resume_checkpoint(
    path: Path,
    *,
    stage: Stage,
    config: TrainConfig,
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
) -> tuple[int, list[dict[str, Any]]]:
    """Restore what :func:`save_checkpoint` wrote into the objects of a new run.

    Returns:
        The epochs done and their records (as JSON).
    """
    payload = read_checkpoint(path)
    check_resumable(payload, stage, config, path)
    supernet.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    stage.load_state_dict(payload["stage_state"])
    set_rng_state(payload["rng"])
    return int(payload["epoch"]), payload["history"]
