"""``mess train stage1|stage2``: the two MESS training stages.

Multi-GPU: ``torchrun --nproc-per-node N -m mess train stage1 ...`` (DDP; ``--batch-size`` is
per process; only rank 0 writes files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app, parse_size

train_app = typer.Typer(
    help="Train a supernet: stage1 (exit-aware backbone), stage2 (frozen-backbone heads).\n\n"
    "Example: mess train stage1 --supernet sn.pt --data synth --epochs 10 --batch-size 16 "
    "-o s1.pt",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


def run_training(
    stage: str, supernet: Path, data: str, output: Path, **options: Any
) -> list[dict[str, Any]]:
    """:func:`mess.pipeline.train_supernet`, its unusable inputs as usage errors."""
    from mess.nn import SupernetFileError
    from mess.pipeline import PipelineError, train_supernet

    try:
        return train_supernet(stage=stage, supernet=supernet, data=data, output=output, **options)
    except (PipelineError, SupernetFileError) as exc:
        raise UserError(str(exc)) from None


def _heads(text: str | None) -> list[str] | None:
    return [h.strip() for h in text.split(",") if h.strip()] if text else None


SupernetOpt = Annotated[Path, typer.Option("--supernet", help="Input supernet file.")]
OutputOpt = Annotated[
    Path, typer.Option("-o", "--output", help="Output supernet file (checkpoint: OUT.ckpt).")
]
DataOpt = Annotated[
    str, typer.Option(help="synth | synth:N | cityscapes:DIR | voc:DIR | folder:DIR")
]
EpochsOpt = Annotated[int, typer.Option(help="Passes over the training split.")]
BatchOpt = Annotated[int, typer.Option(help="Images per iteration (per process).")]
LrOpt = Annotated[float, typer.Option(help="Peak learning rate (poly decay).")]
OptimOpt = Annotated[str, typer.Option(help="sgd or adamw.")]
SizeOpt = Annotated[str | None, typer.Option(help="Resize images to HxW.")]
TrainLenOpt = Annotated[int | None, typer.Option(help="Training images (synth).")]
ValLenOpt = Annotated[int, typer.Option(help="Calibration images for validation mIoU (0: none).")]
WorkersOpt = Annotated[int, typer.Option(help="DataLoader worker processes.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
SeedOpt = Annotated[int, typer.Option(help="Seed; same seed, same weights (CPU).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from OUT.ckpt.")]
QuietOpt = Annotated[bool, typer.Option("--no-progress", help="No progress bars.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the per-epoch records as JSON.")]


def _report(output: Path, history: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"output": str(output), "epochs": history}))
        return
    last = history[-1] if history else None
    text = f"wrote {output}"
    if last is not None:
        text += f": epoch {last['epoch']}, loss {last['loss']:.4f}"
        if "final" in last["val"]:
            text += f", val mIoU final {last['val']['final']:.4f}"
    typer.echo(text)


@train_app.command("stage1")
def stage1_command(
    supernet: SupernetOpt,
    output: OutputOpt,
    data: DataOpt = "synth",
    epochs: EpochsOpt = 1,
    batch_size: BatchOpt = 8,
    lr: LrOpt = 0.01,
    optimizer: OptimOpt = "sgd",
    size: SizeOpt = None,
    train_length: TrainLenOpt = None,
    val_length: ValLenOpt = 64,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    exit_heads: Annotated[
        str | None,
        typer.Option(help="Candidate heads, comma list (default: the lightest of the space)."),
    ] = None,
    exit_weight: Annotated[float, typer.Option(help="Weight of the early-exit loss.")] = 1.0,
    no_progress: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Stage 1: train the backbone with the final exit and one sampled early exit per step.

    Example: mess train stage1 --supernet sn.pt --data synth --epochs 10 -o stage1.pt
    """
    history = run_training(
        "stage1",
        supernet,
        data,
        output,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        size=parse_size(size) if size else None,
        train_length=train_length,
        val_length=val_length,
        workers=workers,
        device=device,
        seed=seed,
        resume=resume,
        progress=not no_progress,
        exit_heads=_heads(exit_heads),
        exit_weight=exit_weight,
    )
    _report(output, history, as_json)


@train_app.command("stage2")
def stage2_command(
    supernet: SupernetOpt,
    output: OutputOpt,
    data: DataOpt = "synth",
    epochs: EpochsOpt = 1,
    batch_size: BatchOpt = 8,
    lr: LrOpt = 0.01,
    optimizer: OptimOpt = "sgd",
    size: SizeOpt = None,
    train_length: TrainLenOpt = None,
    val_length: ValLenOpt = 64,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    distill_weight: Annotated[
        float, typer.Option(help="Weight of positive filtering distillation (0: labels only).")
    ] = 1.0,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = 2.0,
    heads_per_step: Annotated[
        int, typer.Option(help="Heads per forward/backward group (0: all at once).")
    ] = 0,
    no_progress: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Stage 2: train every candidate exit on a frozen backbone, with distillation.

    Example: mess train stage2 --supernet stage1.pt --data synth --epochs 10 -o trained.pt
    """
    history = run_training(
        "stage2",
        supernet,
        data,
        output,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        size=parse_size(size) if size else None,
        train_length=train_length,
        val_length=val_length,
        workers=workers,
        device=device,
        seed=seed,
        resume=resume,
        progress=not no_progress,
        distill_weight=distill_weight,
        temperature=temperature,
        heads_per_step=heads_per_step,
    )
    _report(output, history, as_json)
