"""The settings of the training loop (a stage's own settings live in the stage)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Settings of the training loop (the stage's own settings live in the stage).

    Args:
        epochs: passes over the training set.
        batch_size: images per iteration and process.
        lr: peak learning rate (poly decay, power 0.9, per iteration).
        optimizer: ``sgd`` (momentum) or ``adamw``.
        momentum: SGD momentum.
        weight_decay: weight decay.
        seed: seeds data order, sampling and every RNG; same seed, same weights (CPU).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        amp: mixed precision when on CUDA (ignored on CPU).
        workers: DataLoader worker processes.
        progress: show progress bars (rank 0 only).
    """

    epochs: int = 1
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        # BN after ASPP's global pooling needs more than one value per channel.
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
