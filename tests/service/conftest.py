"""Service fixtures: one app per test on SQLite and on the real PostgreSQL server.

SQLite: each test copies a template database migrated once per session. PostgreSQL: one
fresh database with a unique name per session (migrated once, dropped at the end); each
test starts from truncated tables. When the server of ``MESS_TEST_POSTGRES_URL`` is
unreachable, PostgreSQL tests fail in CI or with that variable set, and skip otherwise.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from service.app import create_app
from service.db import load_models, upgrade
from service.settings import Settings
from tests.postgres import fresh_database
from tests.service.factories import make_bundle

ADMIN = "test-admin-token-0123456789"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server, migrated to head; dropped afterwards."""
    with fresh_database("mess_test") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; tests copy it."""
    path = tmp_path_factory.mktemp("template") / "mess.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in load_models().sorted_tables)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each backend."""
    if request.param == "sqlite":
        dest = tmp_path / "db" / "mess.db"
        dest.parent.mkdir()
        shutil.copy(request.getfixturevalue("sqlite_template"), dest)
        return f"sqlite:///{dest}"
    url: str = request.getfixturevalue("postgres_server_url")
    _truncate(url)
    return url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings of a test app: its own data folder and database, a known admin token."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        admin_token=ADMIN,
        max_upload_mb=1,
        blob_backend="local",
        auth_cache_seconds=1.0,  # short, for the tests of its expiry
        search_batch_window=0.0,  # searches start at once (the window has tests of its own)
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A TestClient on a started app (lifespan run: migrations, blob store, engine)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def app_with(settings: Settings, **changes: Any) -> Iterator[TestClient]:
    """A client of an app whose settings differ from ``settings`` by ``changes`` (iterate
    once: the app starts and stops around the one value)."""
    with TestClient(create_app(settings.model_copy(update=changes))) as test_client:
        yield test_client


def auth(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(client: TestClient) -> dict[str, str]:
    """One token per role: ``{"admin": ..., "engineer": ..., "agent": ...}``."""
    out = {"admin": ADMIN}
    for role in ("engineer", "agent"):
        r = client.post("/v1/tokens", json={"name": role, "role": role}, headers=auth(ADMIN))
        assert r.status_code == 201, r.text
        out[role] = r.json()["token"]
    return out


@pytest.fixture(scope="session")
def bundle_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid tiny bundle."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny.mess")


def blob_files(settings: Settings) -> list[Path]:
    """Every stored blob of a local store."""
    root = settings.data_dir / "blobs"
    return sorted(p for p in root.glob("??/??/*") if p.is_file())
