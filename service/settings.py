"""The service's one configuration object, read from ``MESS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service settings; every field is ``MESS_<NAME>`` in the environment.

    ``admin_token`` has no default on purpose: when it is unset, the first start generates
    one, stores only its hash and writes the token to ``<data_dir>/admin-token`` (mode 0600),
    logging that path once.
    """

    model_config = SettingsConfigDict(env_prefix="MESS_", extra="ignore")

    data_dir: Path = Field(default=Path("./mess-data"), description="blobs, SQLite, tokens")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/mess.db"
    )
    admin_token: SecretStr | None = None
    max_upload_mb: int = Field(
        default=4096, gt=0, description="bundle upload limit (the paper's space: 2.4 GB of parts)"
    )
    lease_seconds: int = Field(default=60, gt=0)
    blob_backend: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    search_workers: int = Field(
        default=1, ge=0, description="search threads per process (API or mess worker)"
    )
    embedded_worker: bool = Field(
        default=True,
        description="the API process runs searches itself; false: an API-only replica, the "
        "searches left to mess worker processes",
    )
    search_lease_seconds: float = Field(
        default=60.0,
        ge=0.5,
        le=3600,
        description="a claimed search is the worker's for this long, renewed every third of "
        "it; a killed worker's search is taken over once it has expired",
    )
    search_threads: int | None = Field(
        default=None,
        ge=1,
        description="cores one search computes on (numba threads); default: all. Fewer "
        "leave cores to an API on the same machine",
    )
    search_batch_window: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="how long a queued search waits for searches of the same supernet and "
        "options (other devices) to share its walk of the space",
    )
    search_shards: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="split each search (or batch of searches) into this many shards that any "
        "worker may compute, merged into the exact front; 1: each search computed whole",
    )
    search_shard_min_configs: int = Field(
        default=0,
        ge=0,
        description="with search_shards > 1, split only spaces of at least this many "
        "configurations (0: every search)",
    )
    search_wait_seconds: float = Field(
        default=20.0, ge=0, le=300, description="how long POST /v1/search waits for a new front"
    )
    verify_rounds: int = Field(
        default=3,
        ge=1,
        le=20,
        description="verified searches: how many verified configurations may break a budget "
        "they were predicted to meet before the search gives up (422)",
    )
    auth_cache_seconds: float = Field(
        default=5.0, ge=0, le=300, description="how long a process trusts a token it has seen"
    )
    query_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="after how long a process re-checks a (supernet, device) -> latest profile "
        "answer (in the background, answering from it meanwhile)",
    )

    ui_secret: SecretStr | None = Field(
        default=None,
        description="key signing the dashboard's session cookies; default: generated at first "
        "start into <data_dir>/ui-secret",
    )

    rate_limit_per_minute: int = Field(
        default=6000,
        ge=0,
        description="requests per minute per token (per client IP without a working token); "
        "0: no limit",
    )
    rate_limit_burst: int = Field(
        default=1000, ge=0, description="requests at once above the rate; 0: no limit"
    )

    @field_validator(
        "admin_token", "ui_secret", "database_url", "s3_endpoint_url", "s3_bucket", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # MESS_ADMIN_TOKEN= (empty) must not become an empty, guessable admin token
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def db_url(self) -> str:
        """The database URL, defaulting to a SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mess.db').resolve()}"

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return self.max_upload_mb * 1024 * 1024
