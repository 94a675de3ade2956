"""One training stage, from a supernet file to a supernet file (``mess train`` runs it).

See docs/DESIGN.md, "Training".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mess.pipeline.data import pipeline_dataset
from mess.pipeline.errors import PipelineError

STAGES = ("stage1", "stage2")


def train_supernet(
    *,
    stage: str,
    supernet: Path,
    data: str,
    output: Path,
    epochs: int = 1,
    batch_size: int = 8,
    lr: float = 0.01,
    optimizer: str = "sgd",
    size: tuple[int, int] | None = None,
    train_length: int | None = None,
    val_length: int | None = 64,
    workers: int = 0,
    augment_scale: tuple[float, float] = (0.5, 2.0),
    device: str = "auto",
    seed: int = 0,
    data_seed: int = 0,
    resume: bool | str = False,
    progress: bool = True,
    exit_heads: list[str] | None = None,
    exit_weight: float = 1.0,
    distill_weight: float = 1.0,
    temperature: float = 2.0,
    heads_per_step: int = 0,
    joint: bool = False,
) -> list[dict[str, Any]]:
    """Run one training stage and write the trained supernet.

    Args:
        stage: ``stage1`` or ``stage2``.
        supernet: input supernet file (``Supernet.save`` or a ``.mess`` bundle).
        data: ``synth``, ``synth:N``, ``cityscapes:DIR``, ``voc:DIR`` or ``folder:DIR``.
        output: supernet file to write; the checkpoint is ``output`` + ``.ckpt``.
        epochs: passes over the training split.
        batch_size: images per iteration (per process under torchrun).
        lr: peak learning rate (poly decay).
        optimizer: ``sgd`` or ``adamw``.
        size: resize images to ``(H, W)``.
        train_length: number of training images (synth).
        val_length: images of the calibration split used for the per-epoch mIoU (0: none).
        workers: DataLoader workers.
        augment_scale: the training augmentation's range of scale factors.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: seed of every random choice.
        data_seed: mess-synth's base seed (0: the published splits).
        resume: continue from ``output.ckpt``; ``"auto"``: when it exists (the pipeline's
            stages: a build stopped mid-stage goes on from its last epoch; the reuse rule has
            removed any checkpoint made from other inputs).
        progress: show progress bars.
        exit_heads: stage 1 candidate heads (default: the lightest head of the space).
        exit_weight: stage 1 weight of the early-exit loss.
        distill_weight: stage 2 weight of positive filtering distillation.
        temperature: stage 2 distillation temperature.
        heads_per_step: stage 2 heads per forward/backward group (0: all).
        joint: stage 1 trains every early exit of the space with the backbone at every
            iteration (the end-to-end multi-exit scheme) instead of one sampled light exit.

    Returns:
        The per-epoch records as JSON-ready dicts.

    Raises:
        PipelineError: unusable inputs (see the class).
        SupernetFileError: ``supernet`` is not a readable supernet file.

    Example:
        >>> train_supernet(stage="stage1", supernet=Path("sn.pt"), data="synth",
        ...                output=Path("s1.pt"), epochs=10)  # doctest: +SKIP
    """
    import torch

    from mess.nn import load_supernet
    from mess.nn.train import TrainConfig, checkpoint_path, train_stage1, train_stage2
    from mess.nn.train.distributed import is_main_process

    if stage not in STAGES:
        raise PipelineError(f"unknown stage {stage!r}: use stage1 or stage2")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise PipelineError(f"invalid device {device!r}: use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError("--device cuda: CUDA is not available on this machine")
    ckpt = checkpoint_path(output)
    if resume == "auto":
        resume = ckpt.is_file()
    elif resume not in (True, False):
        raise PipelineError(f"invalid resume {resume!r}: use True, False or 'auto'")
    if resume and not ckpt.is_file():
        raise PipelineError(f"--resume: no checkpoint {ckpt}")
    sn = load_supernet(supernet)
    try:
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            seed=seed,
            device=device,
            workers=workers,
            progress=progress,
        )
        train_set = pipeline_dataset(
            data,
            "train",
            data_seed=data_seed,
            size=size,
            num_classes=sn.num_classes,
            train=True,
            augment_scale=augment_scale,
            length=train_length,
            seed=seed,
        )
        val_set: Any = None
        if val_length != 0:
            val_set = pipeline_dataset(
                data,
                "calibration",
                data_seed=data_seed,
                size=size,
                num_classes=sn.num_classes,
                length=val_length,
                seed=seed,
            )
    except ValueError as exc:  # the training settings
        raise PipelineError(str(exc)) from None
    if val_set is not None and val_length is not None and len(val_set) > val_length:
        val_set = torch.utils.data.Subset(val_set, range(val_length))

    common: dict[str, Any] = {
        "config": config,
        "val_set": val_set,
        "checkpoint": ckpt,
        "resume": resume,
    }
    try:
        if stage == "stage1":
            exits = sn.early_exit_ids if joint else None
            history = train_stage1(
                sn,
                train_set,
                exits=exits,
                exit_heads=exit_heads,
                exit_weight=exit_weight,
                joint=joint,
                **common,
            )
        else:
            history = train_stage2(
                sn,
                train_set,
                distill_weight=distill_weight,
                temperature=temperature,
                heads_per_step=heads_per_step,
                **common,
            )
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    if is_main_process():  # under torchrun only rank 0 writes files
        sn.cpu().save(output)
    return [r.to_json() for r in history]
