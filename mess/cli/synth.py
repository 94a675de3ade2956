"""``mess synth``: write mess-synth images in the plain folder format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from mess.cli._app import UserError, app, parse_size


def write_synth(
    output: Path,
    *,
    split: str = "train",
    count: int = 100,
    size: tuple[int, int] = (64, 64),
    num_classes: int = 8,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``count`` images of a mess-synth split to ``output/<split>/``.

    The result reads back with ``build_dataset("folder:<output>", split)``.

    Args:
        output: folder to write in (one subfolder per split).
        split: ``train``, ``calibration`` or ``test``.
        count: number of images.
        size: ``(height, width)``.
        num_classes: 4 to 19.
        seed: base seed of the benchmark (0 = the published splits).
        progress: called with the number of images done since the last call.

    Returns:
        The split's folder.
    """
    from mess.data.synth import SPLITS, SynthConfig, write_folder

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    if count < 1:
        raise UserError(f"--count must be >= 1, got {count}")
    try:
        config = SynthConfig(num_classes=num_classes, height=size[0], width=size[1], seed=seed)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return write_folder(config, split, count, output / split, progress=progress)


@app.command("synth")
def synth_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write.")],
    split: Annotated[str, typer.Option(help="train, calibration or test.")] = "train",
    count: Annotated[int, typer.Option(help="Number of images.")] = 100,
    size: Annotated[str, typer.Option(help="Image size HxW.")] = "64x64",
    num_classes: Annotated[int, typer.Option(help="Number of classes, 4 to 19.")] = 8,
    seed: Annotated[int, typer.Option(help="Base seed (0 = the published splits).")] = 0,
) -> None:
    """Generate mess-synth street scenes as PNGs (images/, masks/, meta.json).

    Example: mess synth -o data/synth --split calibration --count 500 --size 128x128
    """
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"mess-synth {split}", total=count)
        folder = write_synth(
            output,
            split=split,
            count=count,
            size=parse_size(size),
            num_classes=num_classes,
            seed=seed,
            progress=lambda n: bar.advance(task, n),
        )
    typer.echo(f"wrote {count} {split} images to {folder} (read with folder:{output})")
