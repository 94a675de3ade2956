"""``mess serve``, ``mess push`` and ``mess token create``: the service and its client."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app

log = logging.getLogger(__name__)
token_app = typer.Typer(help="Manage API tokens on a MESS server.", no_args_is_help=True)
app.add_typer(token_app, name="token")

ServerOpt = Annotated[
    str, typer.Option("--server", envvar="MESS_SERVER", help="Server URL, e.g. http://host:8000")
]
TokenOpt = Annotated[str, typer.Option("--token", envvar="MESS_TOKEN", help="API token")]


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the service with uvicorn (settings from ``MESS_*``; embedded defaults: SQLite
    and blobs under ``./mess-data``).

    Args:
        host: interface to bind.
        port: TCP port.
        workers: uvicorn worker processes.
    """
    try:
        import uvicorn

        from service.app import prepare
        from service.settings import Settings
    except ImportError as exc:
        raise UserError(
            f"the service needs the 'service' extra: pip install 'mess[service]' ({exc})"
        ) from None
    settings = Settings()
    if workers > 1:
        prepare(settings)  # once before the workers start: one generated admin token
    uvicorn.run(
        "service.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # MESS_LOG_LEVEL=WARNING also drops uvicorn's per-request access log lines
        log_level=settings.log_level.lower(),
    )


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


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each with its own caches).")
    ] = 1,
) -> None:
    """Run the MESS service (MESS_DATABASE_URL, MESS_DATA_DIR, MESS_ADMIN_TOKEN, ...).

    Example: MESS_ADMIN_TOKEN=$(openssl rand -hex 24) mess serve --port 8000
    """
    serve(host, port, workers)


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
