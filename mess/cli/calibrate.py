"""``mess calibrate``: the exit statistics of a supernet on a data split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app, parse_size


def _load(supernet: Path) -> Any:
    from mess.nn import SupernetFileError, load_supernet

    try:
        return load_supernet(supernet)
    except SupernetFileError as exc:
        raise UserError(str(exc)) from None


def run_calibration(
    supernet: Path,
    data: str,
    output: Path,
    *,
    split: str = "calibration",
    pixel_thresholds: list[float] | None = None,
    size: tuple[int, int] | None = None,
    length: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Compute and write the ``mess-stats`` v1 file of a supernet on a data split."""
    import torch
    from rich.progress import Progress

    from mess.data import build_dataset
    from mess.nn.calibrate import DEFAULT_PIXEL_THRESHOLDS, calibrate
    from mess.stats import Stats, save_stats, validate_stats

    sn = _load(supernet)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dataset = build_dataset(
            data, split, size=size, num_classes=sn.num_classes, length=length, seed=seed
        )
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    if getattr(dataset, "num_classes", sn.num_classes) != sn.num_classes:
        raise UserError(f"{data} has {dataset.num_classes} classes, the supernet {sn.num_classes}")
    with Progress() as progress:
        task = progress.add_task(f"calibrating on {data}:{split}", total=len(dataset))
        arrays = calibrate(
            sn,
            dataset,
            pixel_thresholds=pixel_thresholds or DEFAULT_PIXEL_THRESHOLDS,
            batch_size=batch_size,
            device=device,
            class_names=getattr(dataset, "class_names", None),
            progress=lambda n: progress.advance(task, n),
        )
    stats = Stats(
        meta=json.loads(str(arrays["meta"])),
        intersection=arrays["intersection"],
        predicted=arrays["predicted"],
        target=arrays["target"],
        confidence=arrays["confidence"],
    )
    validate_stats(stats)
    save_stats(stats, output)
    return stats.meta


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"invalid list of numbers {text!r}") from None


@app.command("calibrate")
def calibrate_command(
    supernet: Annotated[Path, typer.Option(help="Trained supernet file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="stats.npz to write.")],
    data: Annotated[
        str, typer.Option(help="synth | cityscapes:DIR | voc:DIR | folder:DIR")
    ] = "synth",
    split: Annotated[str, typer.Option(help="Data split.")] = "calibration",
    pixel_thresholds: Annotated[
        str, typer.Option(help="Pixel thresholds, comma list.")
    ] = "0.5,0.6,0.7,0.8,0.9",
    size: Annotated[str | None, typer.Option(help="Resize images to HxW.")] = None,
    length: Annotated[int | None, typer.Option(help="Images (synth: how many).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per backbone pass.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Compute the exit statistics (mess-stats v1) of every exit, one backbone pass per batch.

    Example: mess calibrate --supernet sn.pt --data synth --split calibration -o stats.npz
    """
    meta = run_calibration(
        supernet,
        data,
        output,
        split=split,
        pixel_thresholds=_floats(pixel_thresholds),
        size=parse_size(size) if size else None,
        length=length,
        batch_size=batch_size,
        device=device,
    )
    typer.echo(
        f"wrote {output}: {meta['num_samples']} samples x {len(meta['exits']) + 1} exits x "
        f"{len(meta['pixel_thresholds'])} pixel thresholds"
    )
