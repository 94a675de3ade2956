"""A search of one supernet's space over one cost table (a device profile or GFLOPs), and
the shards a large search is split into."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class Search(Base):
    """The front of (supernet, profile version or GFLOPs, search options), computed once.

    ``key`` is the sha256 of those three; every budget query with the same key is answered
    from the stored front (``front_sha256``, a blob). A running search is held by one worker
    (``lease_owner``) until ``lease_expires_at``, which that worker renews while it computes;
    past it, another worker may take the search over (docs/DESIGN.md, "Service").

    ``shards`` is set when a worker split the search into that many :class:`SearchShard`
    items (``MESS_SEARCH_SHARDS``): the search stays ``running`` without a lease while they
    are computed; the worker merging their fronts holds the lease while it merges.
    """

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    supernet_id: Mapped[str] = mapped_column(ForeignKey("supernets.id", ondelete="CASCADE"))
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    unit: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    front_sha256: Mapped[str | None] = mapped_column(String(64))
    reference_miou: Mapped[float | None] = mapped_column(Float)
    configs_evaluated: Mapped[int | None] = mapped_column(BigInteger)
    seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    shards: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SearchShard(Base):
    """Shard ``shard_index`` of a split search (of ``Search.shards``): a part of its space
    that any worker may claim, under a lease, as it claims a search.

    Status ``queued`` -> ``running`` (``lease_owner`` until ``lease_expires_at``, renewed while
    it computes; an expired lease makes it claimable again) -> ``done`` (its front, a
    ``mess-front`` file with a shard record, in ``front_sha256``) | ``failed`` (``error``; the
    search fails with it). ``attempts`` counts the claims.
    """

    __tablename__ = "search_shards"
    __table_args__ = (UniqueConstraint("search_id", "shard_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    shard_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    front_sha256: Mapped[str | None] = mapped_column(String(64))
    configs_evaluated: Mapped[int | None] = mapped_column(BigInteger)
    seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
