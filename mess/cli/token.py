"""``mess token create``: API tokens on a MESS server."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mess.cli._app import ServerOpt, TokenOpt, UserError, app

token_app = typer.Typer(help="Manage API tokens on a MESS server.", no_args_is_help=True)
app.add_typer(token_app, name="token")


def create_token(role: str, name: str, server: str, token: str) -> dict[str, Any]:
    """Create an API token on a server (needs an admin token).

    Args:
        role: admin, engineer or agent.
        name: a label for the token.
        server: server URL.
        token: an admin token.

    Returns:
        The new token record, with ``token`` (shown once).
    """
    from mess.client import ClientError, MessClient

    if role not in ("admin", "engineer", "agent"):
        raise UserError(f"invalid role {role!r}: admin, engineer or agent")
    try:
        with MessClient(server, token) as client:
            return client.create_token(role, name)
    except ClientError as exc:
        raise UserError(str(exc)) from None


@token_app.command("create")
def token_create_command(
    role: Annotated[str, typer.Option(help="admin, engineer or agent.")],
    name: Annotated[str, typer.Option(help="A label for the token.")],
    server: ServerOpt,
    token: TokenOpt,
) -> None:
    """Create an API token; the token itself is the last line printed (shown once).

    Example: mess token create --role agent --name pi-5 --server URL --token $ADMIN_TOKEN
    """
    result = create_token(role, name, server, token)
    typer.echo(f"created {result['role']} token {result['name']!r} (id {result['id']})")
    typer.echo(result["token"])
