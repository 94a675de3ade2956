"""A throw-away database on the real PostgreSQL server (``MESS_TEST_POSTGRES_URL``).

An unreachable server fails the PostgreSQL tests when ``CI`` is set or the URL was given
explicitly (a run that means to test PostgreSQL must not turn green by skipping it); only a
developer run with neither set skips them, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest
from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    """The server's URL: ``MESS_TEST_POSTGRES_URL``, else the local default."""
    return os.environ.get("MESS_TEST_POSTGRES_URL") or DEFAULT_URL


def required() -> bool:
    """Whether the server must be reachable: ``CI`` or ``MESS_TEST_POSTGRES_URL`` is set."""
    return bool(os.environ.get("CI") or os.environ.get("MESS_TEST_POSTGRES_URL"))


def unreachable(server: URL, error: Exception) -> NoReturn:
    """Fail the calling test if the server is required, else skip it; both say why."""
    reason = f"PostgreSQL unreachable at {server.render_as_string()}: {error}"
    if required():
        pytest.fail(f"{reason} (required: CI or MESS_TEST_POSTGRES_URL is set)", pytrace=False)
    pytest.skip(reason)


def _connect_error(engine: Engine) -> OperationalError | None:
    """The error of connecting to the server, or None when it answers."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    return None


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create an empty database named ``<prefix>_<random>``, yield its URL, drop it after.

    An unreachable server fails the calling test in CI or with ``MESS_TEST_POSTGRES_URL``
    set, and skips it otherwise (see ``unreachable``).
    """
    server = make_url(server_url())
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    if (error := _connect_error(admin)) is not None:
        admin.dispose()
        unreachable(server, error)  # outside the except block: one message, no chained trace
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
