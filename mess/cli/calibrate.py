"""``mess calibrate`` (exit statistics) and ``mess costs`` (GFLOPs cost table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app, parse_size
from mess.fileio import write_text_atomic


def _load(supernet: Path) -> Any:
    from mess.nn import SupernetFileError, load_supernet

    try:
        return load_supernet(supernet)
    except SupernetFileError as exc:
        raise UserError(str(exc)) from None


def write_costs(supernet: Path, input_size: tuple[int, int], output: Path) -> dict[str, Any]:
    """Write the ``mess-costs`` v1 GFLOPs table of a supernet file; returns the table."""
    from mess.nn.costs import gflops_table

    table = gflops_table(_load(supernet), input_size)
    write_text_atomic(output, json.dumps(table, indent=1))
    return table


@app.command("costs")
def costs_command(
    supernet: Annotated[Path, typer.Option(help="Supernet file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="costs.json to write.")],
    input_size: Annotated[str, typer.Option(help="Input size HxW.")] = "512x512",
) -> None:
    """Write the cost table (mess-costs v1) of every part in GFLOPs, without a device.

    Example: mess costs --supernet sn.pt --input-size 512x1024 -o costs.json
    """
    table = write_costs(supernet, parse_size(input_size), output)
    total = sum(table["segments"].values()) + table["heads"]["final"]
    typer.echo(f"wrote {output}: original network {total:.3f} GFLOPs")


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
