"""``alembic upgrade head`` then ``alembic check`` on fresh SQLite and PostgreSQL databases."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tests.postgres import fresh_database

ROOT = Path(__file__).resolve().parents[2]


def _alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(ROOT / "alembic.ini"),
            "-x",
            f"url={url}",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_database("mess_mig") as url:
        yield url


def test_upgrade_head_then_check_passes(fresh_url: str) -> None:
    up = _alembic(fresh_url, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    check = _alembic(fresh_url, "check")
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    engine = create_engine(fresh_url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"tokens", "supernets", "supernet_parts", "devices", "profiles"} <= names


def test_constraints_follow_the_naming_convention() -> None:
    from service.db import load_models

    tables = load_models().tables
    assert tables["profiles"].primary_key.name == "pk_profiles"
    uniques = {
        c.name for c in tables["profiles"].constraints if c.name and c.name.startswith("uq_")
    }
    assert "uq_profiles_supernet_id_device_id_version" in uniques


def test_processes_migrating_one_fresh_database_together_all_succeed(fresh_url: str) -> None:
    """What N API workers do at start-up (SQLite: a file lock; PostgreSQL: an advisory
    lock). Without them, the losers fail with 'database is locked' or 'table exists'."""
    code = f"from service.db import upgrade; upgrade({fresh_url!r})"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs[-1][-2000:]
    check = _alembic(fresh_url, "check")
    assert check.returncode == 0, check.stderr


def test_the_partial_timings_migration_goes_down_and_up_again(fresh_url: str) -> None:
    for args in (("upgrade", "head"), ("downgrade", "0004"), ("upgrade", "head")):
        step = _alembic(fresh_url, *args)
        assert step.returncode == 0, step.stderr
    engine = create_engine(fresh_url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
        assert "job_timings" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert {"timings_context", "timings_device", "timings_discarded"} <= columns
    check = _alembic(fresh_url, "check")
    assert check.returncode == 0, check.stderr


def test_search_leases_upgrade_from_the_previous_revision_and_back(fresh_url: str) -> None:
    def columns() -> set[str]:
        engine = create_engine(fresh_url)
        try:
            return {c["name"] for c in inspect(engine).get_columns("searches")}
        finally:
            engine.dispose()

    assert _alembic(fresh_url, "upgrade", "0005").returncode == 0
    assert "lease_owner" not in columns()
    up = _alembic(fresh_url, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    assert {"lease_owner", "lease_expires_at"} <= columns()
    down = _alembic(fresh_url, "downgrade", "0005")
    assert down.returncode == 0, down.stderr
    assert "lease_expires_at" not in columns()


def test_search_shards_upgrade_from_the_previous_revision_and_back(fresh_url: str) -> None:
    def schema() -> tuple[set[str], set[str]]:
        engine = create_engine(fresh_url)
        try:
            found = inspect(engine)
            return set(found.get_table_names()), {c["name"] for c in found.get_columns("searches")}
        finally:
            engine.dispose()

    assert _alembic(fresh_url, "upgrade", "0006").returncode == 0
    tables, columns = schema()
    assert "search_shards" not in tables and "shards" not in columns
    up = _alembic(fresh_url, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    tables, columns = schema()
    assert "search_shards" in tables and "shards" in columns
    down = _alembic(fresh_url, "downgrade", "0006")
    assert down.returncode == 0, down.stderr
    tables, columns = schema()
    assert "search_shards" not in tables and "shards" not in columns
    check = _alembic(fresh_url, "upgrade", "head")
    assert check.returncode == 0, check.stderr
