"""``mess costs``: the GFLOPs cost table of a supernet, without a device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app, parse_size
from mess.fileio import write_text_atomic


def write_costs(supernet: Path, input_size: tuple[int, int], output: Path) -> dict[str, Any]:
    """Write the ``mess-costs`` v1 GFLOPs table of a supernet file; returns the table."""
    from mess.nn import SupernetFileError, load_supernet
    from mess.nn.costs import gflops_table

    try:
        sn = load_supernet(supernet)
    except SupernetFileError as exc:
        raise UserError(str(exc)) from None
    table = gflops_table(sn, input_size)
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
