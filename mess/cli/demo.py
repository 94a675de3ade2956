"""``mess demo``: the main job on embedded defaults, end to end, in one work folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mess.cli._app import UserError, app


@app.command("demo")
def demo_command(
    workdir: Annotated[Path, typer.Option(help="Work folder; kept for inspection.")] = Path(
        "mess-demo"
    ),
    preset: Annotated[str, typer.Option(help="Preset: tiny (2 CPU cores, minutes).")] = "tiny",
) -> None:
    """Run the whole MESS pipeline: data, convert, train, calibrate, export, serve, profile,
    search, download and measure the tailored model. A second run reuses valid results.

    Example: mess demo --workdir ./mess-demo
    """
    from mess.demo import run_demo
    from mess.pipeline import PRESETS

    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}: {', '.join(PRESETS)}")
    run_demo(workdir, preset=preset)
