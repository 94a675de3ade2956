"""The dashboard's tests reuse the service fixtures (one app per test, both backends)."""

from tests.service.conftest import (  # noqa: F401 (fixtures)
    bundle_file,
    client,
    db_url,
    postgres_server_url,
    settings,
    sqlite_template,
)
