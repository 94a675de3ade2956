"""The training loop shared by both MESS stages.

A stage (:class:`Stage`) says which parameters train, which modules are in train mode and how
one batch turns into losses; :func:`fit` does the rest: seeding, data loading (a
``DistributedSampler`` in every case, so the data order depends only on the seed and the
epoch), SGD/AdamW with a poly learning rate per iteration, mixed precision on CUDA
(``torch.autocast`` + ``GradScaler``), DDP when launched by ``torchrun``, validation mIoU from a
confusion matrix, and a checkpoint after every epoch from which ``resume`` continues exactly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from mess.fileio import atomic_write
from mess.nn.normalize import Normalize
from mess.nn.supernet import Supernet
from mess.stats import IGNORE_INDEX, miou_from_sums

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mess-train-checkpoint"
CHECKPOINT_VERSION = 1
POLY_POWER = 0.9
# Settings a resumed run must share with the run that wrote the checkpoint.
_RESUME_KEYS = ("epochs", "batch_size", "lr", "optimizer", "seed", "momentum", "weight_decay")


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


@dataclass
class Distributed:
    """This process's place in a ``torchrun`` job (world size 1 without one)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup_distributed(device: str = "auto") -> Distributed:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``).

    Without those variables (a plain run) nothing happens. The backend is NCCL on CUDA, gloo on
    CPU.

    Args:
        device: the requested device; ``cpu`` forces gloo.

    Returns:
        The :class:`Distributed` description.
    """
    if "WORLD_SIZE" not in os.environ:
        return Distributed()
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    initialized_here = False
    if not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
        initialized_here = True
    return Distributed(world, rank, local, initialized_here)


def is_main_process() -> bool:
    """True outside torchrun and on rank 0 (the only process that writes files)."""
    return int(os.environ.get("RANK", "0")) == 0


def cleanup_distributed(ctx: Distributed) -> None:
    """Leave the process group if :func:`setup_distributed` joined it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(device: str, ctx: Distributed | None = None) -> torch.device:
    """``auto`` -> CUDA when present (``cuda:LOCAL_RANK`` under torchrun), else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and ctx is not None and ctx.enabled:
        device = f"cuda:{ctx.local_rank}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, as tensors and ints (loadable with ``weights_only``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def poly_scheduler(
    optimizer: torch.optim.Optimizer, total_iters: int, power: float = POLY_POWER
) -> torch.optim.lr_scheduler.PolynomialLR:
    """``lr * (1 - it / total) ** power``, stepped once per iteration."""
    return torch.optim.lr_scheduler.PolynomialLR(
        optimizer, total_iters=max(total_iters, 1), power=power
    )


def build_optimizer(params: Sequence[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (segmentation's usual choice) or AdamW."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


# ---------------------------------------------------------------------- evaluation


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``[C, C]`` int64 counts, rows = label, columns = prediction; ignored pixels left out."""
    valid = target != ignore_index
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, -1)


def miou_from_confusion(confusion: torch.Tensor) -> float:
    """Mean IoU over classes present in labels or predictions (``union > 0``), in [0, 1]."""
    counts = confusion.to(torch.int64).cpu().numpy()
    inter = np.diag(counts)
    return miou_from_sums(inter, counts.sum(0) + counts.sum(1) - inter)


@torch.no_grad()
def evaluate(
    supernet: Supernet,
    dataset: Dataset,
    exits: Sequence[str],
    *,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    workers: int = 0,
) -> dict[str, float]:
    """mIoU of each exit on ``dataset`` (one backbone pass per batch, logits upsampled).

    Args:
        supernet: the supernet; evaluated in eval mode, its previous modes restored.
        dataset: yields ``(image [3,H,W] in [0,1], mask [H,W])``.
        exits: exit ids to measure.
        batch_size: images per pass.
        device: where to run.
        workers: DataLoader workers.

    Returns:
        dict exit id -> mIoU in [0, 1].
    """
    modes = {m: m.training for m in supernet.modules()}
    supernet.eval()
    normalize = Normalize().to(device)
    c = supernet.num_classes
    confusion = {eid: torch.zeros(c, c, dtype=torch.int64, device=device) for eid in exits}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    try:
        for images, masks in loader:
            images, masks = images.to(device), masks.to(device)
            out = supernet(normalize(images), exits=list(exits))
            for eid, logits in out.items():
                confusion[eid] += confusion_matrix(logits.argmax(1), masks, c)
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return {eid: miou_from_confusion(m.cpu()) for eid, m in confusion.items()}


# ---------------------------------------------------------------------- stages and the loop


class Stage(Protocol):
    """What :func:`fit` needs from a training stage."""

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


def checkpoint_path(output: str | Path) -> Path:
    """The checkpoint file of an output supernet: ``OUT.ckpt``."""
    output = Path(output)
    return output.with_name(output.name + ".ckpt")


def _save(payload: dict[str, Any], path: Path) -> None:
    with atomic_write(path) as fh:  # a crash mid-write never leaves a truncated checkpoint
        torch.save(payload, fh)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only``); ValueError when it is not one."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a MESS training checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {payload.get('version')!r}")
    return payload


def _check_resumable(
    payload: dict[str, Any], stage: Stage, config: TrainConfig, path: Path
) -> None:
    if payload["stage"] != stage.name:
        raise ValueError(f"{path}: checkpoint of {payload['stage']}, not {stage.name}")
    saved = payload["config"]
    for key in _RESUME_KEYS:
        if saved.get(key) != getattr(config, key):
            raise ValueError(
                f"{path}: checkpoint made with {key}={saved.get(key)!r}, this run has "
                f"{key}={getattr(config, key)!r}"
            )
    if payload["stage_settings"] != stage.settings():
        raise ValueError(f"{path}: checkpoint made with other stage settings")


def _progress(iterable: Any, *, enabled: bool, desc: str, total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False, unit="batch")


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
        stage: what is trained and how (:class:`Stage`).
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
    sampler = _EpochSampler(
        DistributedSampler(
            train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
        )
    )
    # Worker seeds (only unseeded randomness uses them), drawn once: the workers persist.
    loader_rng = torch.Generator().manual_seed(config.seed * 100_003)
    loader = DataLoader(
        _AtEpoch(train_set),
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        drop_last=True,  # a batch of one breaks BN after ASPP's global pooling
        generator=loader_rng,
        pin_memory=device.type == "cuda",
        # Workers started once, not every epoch (the likely cause of an 8-14 s wait every
        # epoch on a GPU machine, bench/RESULTS.md); the epoch reaches their copies of the
        # data set with each index.
        persistent_workers=config.workers > 0,
    )
    if len(loader) == 0:
        raise ValueError(
            f"training set of {len(train_set)} images (per process) is smaller than one batch "  # type: ignore[arg-type]
            f"of {config.batch_size}"
        )
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
        payload = load_checkpoint(ckpt)
        _check_resumable(payload, stage, config, ckpt)
        supernet.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scaler.load_state_dict(payload["scaler"])
        stage.load_state_dict(payload["stage_state"])
        set_rng_state(payload["rng"])
        history = [EpochRecord(**r) for r in payload["history"]]
        start = int(payload["epoch"])
        log.info("resumed %s from %s after epoch %d", stage.name, ckpt, start)

    normalize = Normalize().to(device)
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
                payload = {
                    "format": CHECKPOINT_FORMAT,
                    "version": CHECKPOINT_VERSION,
                    "stage": stage.name,
                    "epoch": epoch + 1,
                    "config": asdict(config),
                    "stage_settings": stage.settings(),
                    "model": {k: v.detach().cpu() for k, v in supernet.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "stage_state": stage.state_dict(),
                    "rng": rng_state(),
                    "history": [r.to_json() for r in history],
                }
                _save(payload, ckpt)
        ctx.barrier()
        if on_epoch_end is not None:
            on_epoch_end(record)
    return history


class _EpochSampler(Sampler[tuple[int, int]]):
    """``(epoch, index)`` pairs in ``sampler``'s order, so that the epoch travels with each
    index to the data set's copy in a persistent worker."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class _AtEpoch(Dataset):
    """``dataset[(epoch, i)]`` is sample ``i`` with the augmentations of ``epoch``
    (:meth:`mess.data.SegmentationDataset.set_epoch`; data sets without it ignore the epoch)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def _log_epoch(name: str, record: EpochRecord, epochs: int, show: bool) -> None:
    text = f"{name} epoch {record.epoch}/{epochs}: loss {record.loss:.4f}"
    if record.val:
        early = [v for k, v in record.val.items() if k != "final"]
        if "final" in record.val:
            text += f", val mIoU final {record.val['final']:.4f}"
        if early:
            text += f", early exits mean {np.mean(early):.4f} best {max(early):.4f}"
    if show:
        from tqdm.auto import tqdm

        tqdm.write(text)
    log.info(text)


def upsample(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of logits to the label size (torchvision's convention)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
