"""Schemathesis over the service's own OpenAPI spec: no generated request gets a 5xx.

Every operation of the spec that ``service.app.create_app`` publishes is called with
generated valid and invalid requests under the admin token (the role that reaches every
route's code) on a real, started app (SQLite, local blobs; its lifespan run by a
``TestClient``). Bounded: a few examples per operation, so the file runs in well under a
minute on 2 cores. SQLite only; what PostgreSQL answers differently (NUL bytes in text,
integers out of range) is in tests/service/test_hostile.py.

The spec is loaded at collection time from an app that is never started (``create_app``
connects to nothing): schemathesis' fixture-based lazy loader does not work with pytest 9.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import ADMIN, auth

MAX_EXAMPLES = 25

schema = schemathesis.openapi.from_dict(
    create_app(Settings(data_dir=Path("unused"), admin_token=ADMIN)).openapi()
)


@pytest.fixture
def asgi_app(sqlite_template: Path, tmp_path: Path) -> Iterator[Any]:
    """A started app on a fresh SQLite copy, as a plain ASGI callable for schemathesis."""
    db = tmp_path / "mess.db"
    shutil.copy(sqlite_template, db)
    app = create_app(
        Settings(
            data_dir=tmp_path / "data",
            database_url=f"sqlite:///{db}",
            admin_token=ADMIN,
            max_upload_mb=1,
            search_wait_seconds=0.5,
            rate_limit_per_minute=0,  # a 429 would end an example before it reaches a route
        )
    )

    async def http_only(scope: Any, receive: Any, send: Any) -> None:
        # schemathesis would run the lifespan a second time: the TestClient below owns it
        if scope["type"] != "lifespan":
            await app(scope, receive, send)

    with TestClient(app):
        yield http_only


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_operation_answers_a_server_error(case: Any, asgi_app: Any) -> None:
    case.call_and_validate(app=asgi_app, headers=auth(ADMIN), checks=[not_a_server_error])
