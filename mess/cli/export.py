"""``mess export``: supernet + exit statistics -> bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
) -> None:
    """Export the supernet as a bundle: ONNX parts, stats, GFLOPs costs, weights.

    Example: mess export --supernet sn.pt --stats stats.npz --input-size 512x1024 -o city.mess
    """
    from rich.progress import Progress

    from mess.bundle import BundleError
    from mess.nn import SupernetFileError, load_supernet
    from mess.nn.export import ExportError, export_bundle

    size = parse_size(input_size)
    try:
        sn = load_supernet(supernet)
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
            )
    except (SupernetFileError, ExportError, BundleError, ValueError) as exc:
        raise UserError(str(exc)) from None
    typer.echo(
        f"wrote {output}: {len(manifest['parts'])} parts, {len(manifest['exits'])} exits, "
        f"input {size[0]}x{size[1]}"
    )
