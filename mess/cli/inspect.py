"""``mess inspect``: a supernet's positions, exits and GFLOPs as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mess.cli._app import UserError, app, parse_size


@app.command("inspect")
def inspect_command(
    supernet: Annotated[Path, typer.Argument(help="Supernet file (from mess convert/train).")],
    input_size: Annotated[str, typer.Option(help="Input size HxW for GFLOPs.")] = "512x512",
) -> None:
    """Show a supernet's positions, exits and GFLOPs as a table.

    Example: mess inspect supernet.pt --input-size 512x1024
    """
    from mess.nn import SupernetFileError, load_supernet, part_costs

    size = parse_size(input_size)
    try:
        sn = load_supernet(supernet)
    except SupernetFileError as exc:
        raise UserError(str(exc)) from None
    costs = part_costs(sn, size)
    console = Console()
    src = sn.source
    console.print(
        f"[bold]{supernet}[/]: {src['backbone']} + {src['head']}, {sn.num_classes} classes, "
        f"{len(sn.heads)} heads per position, input {size[0]}x{size[1]}"
    )
    table = Table(
        "#",
        "position",
        "channels",
        "stride",
        "segment GFLOPs",
        "cum. GFLOPs",
        "heads GFLOPs (min-max)",
    )
    cumulative = 0.0
    for p in sn.positions:
        seg = costs["segments"][p.name].gflops
        cumulative += seg
        hs = [costs["heads"][f"{p.name}/{h.id}"].gflops for h in sn.heads]
        table.add_row(
            str(p.index),
            p.name,
            str(p.channels),
            str(p.stride),
            f"{seg:.3f}",
            f"{cumulative:.3f}",
            f"{min(hs):.3f} - {max(hs):.3f}",
        )
    seg = costs["segments"]["final"].gflops
    fin = costs["heads"]["final"].gflops
    table.add_row("", "final", "", "", f"{seg:.3f}", f"{cumulative + seg:.3f}", f"{fin:.3f}")
    console.print(table)
    total = cumulative + seg + fin
    head_params = sum(c.params for k, c in costs["heads"].items() if k != "final")
    console.print(
        f"original network: {total:.3f} GFLOPs; {len(sn.early_exit_ids)} candidate exits, "
        f"{head_params / 1e6:.2f}M parameters in exit heads"
    )
