"""``mess export``: supernet + exit statistics -> bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app, parse_size


@app.command("export")
def export_command(
    supernet: Annotated[Path, typer.Option(help="Trained supernet file.")],
    stats: Annotated[Path, typer.Option(help="Its exit statistics (mess calibrate).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle NAME.mess to write.")],
    input_size: Annotated[str, typer.Option(help="Input size HxW of the tailored models.")] = (
        "512x512"
    ),
    name: Annotated[str | None, typer.Option(help="Bundle name (default: file stem).")] = None,
    check: Annotated[
        bool, typer.Option(help="Check every part against PyTorch in onnxruntime.")
    ] = True,
    weights: Annotated[
        bool,
        typer.Option(
            help="Also store the supernet weights (supernet.pt) in the bundle, so that the "
            "bundle alone can be exported again or trained further. The service, the agents "
            "and mess assemble never read them; they double a bundle's size.",
        ),
    ] = False,
    sample_images: Annotated[
        int,
        typer.Option(
            min=0,
            max=256,
            help="Store this many calibration images (evenly spaced) for verification: the "
            "service then checks each image's exit on the device against the stats. Needs "
            "--data (and --split, --length) as given to mess calibrate.",
        ),
    ] = 0,
    data: Annotated[
        str | None, typer.Option(help="--sample-images: the calibration data set.")
    ] = None,
    split: Annotated[str, typer.Option(help="--sample-images: its split.")] = "calibration",
    length: Annotated[
        int | None, typer.Option(help="--sample-images: as given to mess calibrate.")
    ] = None,
) -> None:
    """Export the supernet as a deployment bundle: ONNX parts, stats, GFLOPs costs.

    Example: mess export --supernet sn.pt --stats stats.npz --input-size 512x1024 -o city.mess
    (add --sample-images 32 --data synth to carry calibration images for verification)
    """
    from rich.progress import Progress

    from mess.bundle import BundleError
    from mess.nn import SupernetFileError, load_supernet
    from mess.nn.export import ExportError, export_bundle

    size = parse_size(input_size)
    if sample_images and data is None:
        raise UserError("--sample-images needs --data (the calibration data set)")
    try:
        sn = load_supernet(supernet)
        samples = (
            _samples(data, split, length, size, sn.num_classes, stats, sample_images)
            if sample_images and data is not None
            else None
        )
        total = 2 * len(sn.positions) + len(sn.early_exit_ids) + 2 + len(sn.positions)
        with Progress(transient=True) as progress:
            task = progress.add_task("exporting parts", total=total)
            manifest = export_bundle(
                sn,
                stats,
                size,
                output,
                name=name,
                check=check,
                progress=lambda _name: progress.advance(task),
                samples=samples,
                weights=weights,
            )
    except (SupernetFileError, ExportError, BundleError, ValueError) as exc:
        raise UserError(str(exc)) from None
    typer.echo(
        f"wrote {output}: {len(manifest['parts'])} parts, {len(manifest['exits'])} exits, "
        f"input {size[0]}x{size[1]}"
    )


def _samples(
    data: str,
    split: str,
    length: int | None,
    size: tuple[int, int],
    num_classes: int,
    stats: Path,
    count: int,
) -> tuple[Any, Any]:
    """``count`` evenly spaced calibration images and their stats indices."""
    import numpy as np

    from mess.data import build_dataset
    from mess.stats import load_stats

    num_samples = int(load_stats(stats).intersection.shape[0])
    dataset = build_dataset(data, split, size=size, num_classes=num_classes, length=length)
    if len(dataset) != num_samples:
        raise UserError(
            f"{data}:{split} has {len(dataset)} images, the stats {num_samples}: give "
            "--data, --split and --length as to mess calibrate"
        )
    indices = np.unique(np.linspace(0, num_samples - 1, min(count, num_samples)).round())
    indices = indices.astype(np.int64)
    images = np.stack([dataset[int(i)][0].numpy() for i in indices]).astype(np.float32)
    if images.shape[-2:] != size:
        raise UserError(f"{data} images are {images.shape[-2:]}, the input size {size}")
    return images, indices
