"""The typer application, and what the command modules share."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from mess import __version__

app = typer.Typer(
    name="mess",
    help="MESS: multi-exit semantic segmentation. Convert, train, calibrate, export, search, "
    "serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# The options of the commands that talk to a server.
ServerOpt = Annotated[
    str, typer.Option("--server", envvar="MESS_SERVER", help="Server URL, e.g. http://host:8000")
]
TokenOpt = Annotated[str, typer.Option("--token", envvar="MESS_TOKEN", help="API token")]


class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2 (or ``code``)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mess {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging.")] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Console-script entry point: one clear line for user errors, never a traceback.

    Usage errors (a missing or unknown option, a bad value, an unknown command) are left to
    typer's own standalone handling, which prints its usage box and exits 2, whichever click
    it bundles (typer 0.23 and later vendor their own, whose exceptions are not click's).
    """
    try:
        app()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.code) from None


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (or a single ``S`` for a square) into ``(H, W)``."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"invalid size {text!r}: expected HxW, e.g. 512x1024") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise UserError(f"invalid size {text!r}: expected HxW with positive integers")
    return values[0], values[1]
