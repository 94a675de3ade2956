"""``mess push``: upload a bundle to a MESS server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import ServerOpt, TokenOpt, UserError, app


def push(bundle: Path, server: str, token: str) -> dict[str, Any]:
    """Upload a bundle to a server.

    Args:
        bundle: the ``.mess`` file.
        server: server URL.
        token: an engineer (or admin) token.

    Returns:
        The server's answer with ``id`` and ``created``.
    """
    from mess.client import ClientError, MessClient

    if not bundle.is_file():
        raise UserError(f"{bundle}: no such file")
    try:
        with MessClient(server, token) as client:
            return client.push(bundle)
    except ClientError as exc:
        raise UserError(str(exc)) from None


@app.command("push")
def push_command(
    bundle: Annotated[Path, typer.Argument(help="The .mess bundle to upload.")],
    server: ServerOpt,
    token: TokenOpt,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"id": ...} as JSON.')] = False,
) -> None:
    """Upload a supernet bundle; prints its id.

    Example: mess push city.mess --server http://127.0.0.1:8000 --token $MESS_TOKEN --json
    """
    result = push(bundle, server, token)
    if as_json:
        typer.echo(json.dumps({"id": result["id"], "created": result["created"]}))
    else:
        state = "stored" if result["created"] else "already stored"
        typer.echo(f"{state}: {result['name']} ({result['num_exits']} exits)")
        typer.echo(result["id"])
