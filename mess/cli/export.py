"""``mess export`` (supernet -> bundle) and ``mess assemble`` (bundle -> tailored ONNX)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app, parse_size


def read_configuration(path: Path) -> dict[str, Any]:
    """A configuration JSON file: ``mess search --json`` output or its ``configuration``."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("configuration"), dict):
        data = data["configuration"]
    if not isinstance(data, dict) or "terminal" not in data:
        raise UserError(f"{path}: expected a configuration with 'exits' and 'terminal'")
    return data


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


@app.command("assemble")
def assemble_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle from mess export.")],
    config: Annotated[Path, typer.Option(help="Configuration JSON (e.g. mess search --json).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="model.onnx to write.")],
) -> None:
    """Build the self-contained tailored ONNX model of one configuration (no torch).

    Example: mess assemble city.mess --config best.json -o model.onnx
    """
    from mess.bundle import BundleError
    from mess.onnx import AssemblyError, assemble

    configuration = read_configuration(config)
    metadata = {}
    raw = json.loads(config.read_text())
    for key in ("miou", "expected_cost"):
        if isinstance(raw, dict) and key in raw:
            metadata[f"mess.predicted_{key}"] = str(raw[key])
    if not bundle.is_file():
        raise UserError(f"{bundle}: no such file")
    try:
        model = assemble(bundle, configuration, metadata=metadata)
    except (AssemblyError, BundleError, KeyError, ValueError) as exc:
        raise UserError(str(exc)) from None
    output.write_bytes(model.SerializeToString())
    k = len(configuration.get("exits", []))
    typer.echo(f"wrote {output}: {k} early exit(s), terminal {configuration['terminal']}")
