"""``mess assemble``: bundle + configuration -> tailored ONNX model, without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app
from mess.fileio import write_bytes_atomic


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
    write_bytes_atomic(output, model.SerializeToString())
    k = len(configuration.get("exits", []))
    typer.echo(f"wrote {output}: {k} early exit(s), terminal {configuration['terminal']}")
