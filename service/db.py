"""Database plumbing: the declarative base, engines, sessions and migrations.

Nothing here runs at import time: :func:`make_engine` is called from the app's lifespan
(and by Alembic's ``env.py``). The schema only ever changes through Alembic; the app runs
``upgrade head`` at start-up (:func:`upgrade`), never ``create_all``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import DateTime, Engine, MetaData, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

# Stable constraint names, so migrations can refer to (and drop) them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Domain modules whose ORM classes make up the schema (later: searches, configurations).
MODEL_MODULES = (
    "service.auth.models",
    "service.supernets.models",
    "service.devices.models",
    "service.profiles.models",
    "service.jobs.models",
    "service.searches.models",
    "service.configurations.models",
    "service.verifications.models",
)


PG_CONNECT_TIMEOUT = 5  # seconds to establish a PostgreSQL connection
SQLITE_BEGIN = "mess_sqlite_begin"  # execution option: "IMMEDIATE" for write transactions


class Base(DeclarativeBase):
    """Declarative base of every ORM class."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use an aware UTC timestamp")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def load_models() -> MetaData:
    """Import every domain's ORM module and return the complete metadata.

    Returns:
        ``Base.metadata`` with all tables registered.
    """
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT; SQLAlchemy emits BEGIN instead
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the one writer
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock at BEGIN, waiting (busy_timeout) for it. A deferred
    # transaction that reads and then writes fails at once with "database is locked" when
    # another writer committed in between (its snapshot cannot become a write).
    mode = connection.get_execution_options().get(SQLITE_BEGIN, "")
    connection.exec_driver_sql(f"BEGIN {mode}".strip())


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets foreign keys, WAL and a busy timeout; PostgreSQL a
    pre-ping (a connection lost while pooled is replaced) and a connect timeout.

    Args:
        url: SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
        **kwargs: passed to :func:`sqlalchemy.create_engine`.

    Returns:
        The engine.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if (
        parsed.get_driver_name() in ("psycopg", "psycopg2")
        and "connect_timeout" not in parsed.query
    ):
        # an unreachable database must fail a request (503) in seconds, not hang it for
        # libpq's default of minutes; ?connect_timeout=N in the URL overrides this
        kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT} | kwargs.get(
            "connect_args", {}
        )
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine, *, write: bool = False) -> sessionmaker[Session]:
    """Session factory bound to ``engine`` (objects stay usable after commit).

    ``write``: for requests that write. On SQLite their transactions begin IMMEDIATE, so
    concurrent writers queue for the lock instead of failing; elsewhere no difference.
    """
    if write:
        engine = engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
    return sessionmaker(engine, expire_on_commit=False)


_AFTER_COMMIT = "mess_after_commit"
_ON_ROLLBACK = "mess_on_rollback"


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the unit of work holding ``session`` has committed (e.g. drop a
    cache entry only when the change is visible to other sessions)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


def on_rollback(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` if the unit of work holding ``session`` rolls back (e.g. delete the
    blobs its rows would have referred to)."""
    session.info.setdefault(_ON_ROLLBACK, []).append(action)


def _run(session: Session, key: str) -> None:
    for action in session.info.pop(key, ()):
        try:
            action()
        except Exception:  # one failed hook must not hide the outcome or skip the others
            log.exception("%s hook failed", key)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: the only place a session commits (on success) or rolls back (on
    any error); services only flush. Then the :func:`after_commit` or :func:`on_rollback`
    actions run."""
    with factory() as session:
        try:
            with session.begin():
                yield session
        except BaseException:
            session.info.pop(_AFTER_COMMIT, None)
            _run(session, _ON_ROLLBACK)
            raise
        session.info.pop(_ON_ROLLBACK, None)
        _run(session, _AFTER_COMMIT)


def insert_missing(session: Session, entity: type[Base], values: Mapping[str, Any]) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING`` of one row: the first half of a race-free
    get-or-create (then select the row). A concurrent insert of the same key either
    finishes first (this one does nothing) or waits for this one.

    Returns:
        Whether this call inserted the row.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, entity.__table__)
    stmt = insert(table).values(**values).on_conflict_do_nothing()
    # a row comes back only when inserted (rowcount is not reliable with RETURNING, which
    # SQLAlchemy adds to fetch a generated key)
    returned = session.execute(stmt.returning(*table.primary_key.columns)).first()
    return returned is not None


def migrations_dir() -> Path:
    """The Alembic script folder: ``migrations/`` next to the package, or in the cwd.

    Returns:
        Its path.

    Raises:
        RuntimeError: when neither exists.
    """
    for candidate in (
        Path(__file__).resolve().parent.parent / "migrations",
        Path.cwd() / "migrations",
    ):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("Alembic migrations not found (expected ./migrations/env.py)")


def alembic_config(url: str) -> Any:
    """An Alembic ``Config`` for ``url`` without reading ``alembic.ini``.

    Args:
        url: the database URL.

    Returns:
        The config (``alembic.config.Config``).
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (``alembic upgrade head``).

    Args:
        url: the database URL.
        revision: target revision.
    """
    from alembic import command

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        command.upgrade(alembic_config(url), revision)  # PostgreSQL: advisory lock in env.py
        return
    # SQLite: processes starting together on a fresh file (uvicorn --workers) would race to
    # create the same tables; an exclusive lock on a file next to the database serialises them
    lock = Path(f"{parsed.database}.migrate-lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            command.upgrade(alembic_config(url), revision)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
