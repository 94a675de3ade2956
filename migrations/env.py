"""Alembic environment of the MESS service.

The URL comes from, in order: ``config.attributes["url"]`` (the app's start-up upgrade),
``alembic -x url=...``, then :class:`service.settings.Settings` (``MESS_DATABASE_URL`` or
the SQLite file in ``MESS_DATA_DIR``). On PostgreSQL an advisory lock serialises
concurrent upgrades (several API workers starting at once).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import text

from service.db import load_models, make_engine
from service.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = load_models()
_LOCK_ID = 0x4D455353  # "MESS"


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    return str(url) if url else Settings().db_url


def run_migrations_offline() -> None:
    """Emit SQL without a connection (``alembic upgrade head --sql``)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a live connection."""
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _LOCK_ID})
                connection.commit()
            try:
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    render_as_batch=connection.dialect.name == "sqlite",
                    compare_type=True,
                )
                with context.begin_transaction():
                    context.run_migrations()
            finally:
                if postgres:
                    connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
                    connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
