"""``mess calibrate``: the exit statistics of a supernet on a data split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app, parse_size


def run_calibration(supernet: Path, data: str, output: Path, **options: Any) -> dict[str, Any]:
    """:func:`mess.pipeline.calibrate_supernet`, its unusable inputs as usage errors."""
    from mess.nn import SupernetFileError
    from mess.pipeline import PipelineError, calibrate_supernet

    try:
        return calibrate_supernet(supernet=supernet, data=data, output=output, **options)
    except (PipelineError, SupernetFileError) as exc:
        raise UserError(str(exc)) from None


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
