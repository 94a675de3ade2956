"""Queries of searches and their shards: the workers' queue (claims and leases are
conditional updates, race-free; on PostgreSQL the rows being claimed are also locked, SKIP
LOCKED)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from service import db
from service.devices.models import Device
from service.profiles.models import Profile
from service.searches.models import DONE, FAILED, QUEUED, RUNNING, Search, SearchShard


def get(session: Session, search_id: int) -> Search | None:
    return session.get(Search, search_id)


def by_key(session: Session, key: str) -> Search | None:
    return session.scalars(select(Search).where(Search.key == key)).first()


def get_or_create(session: Session, values: Mapping[str, Any]) -> Search:
    """The search of ``values["key"]``, inserted (queued) unless it exists."""
    db.insert_missing(session, Search, values)
    search = by_key(session, values["key"])
    assert search is not None
    return search


def profile_costs(session: Session, profile_id: int) -> dict[str, Any]:
    """The cost table of a profile."""
    costs = session.scalar(select(Profile.costs).where(Profile.id == profile_id))
    assert costs is not None
    return dict(costs)


def _expired(now: dt.datetime) -> ColumnElement[bool]:
    """A running search whose lease has expired (its worker died or hung), or that has none
    (left by an older version); a split search is driven by its shards, never claimed whole."""
    return (
        (Search.status == RUNNING)
        & Search.shards.is_(None)
        & (Search.lease_expires_at.is_(None) | (Search.lease_expires_at < now))
    )


def _claimable(now: dt.datetime) -> ColumnElement[bool]:
    """Queued, or running under an expired lease."""
    return or_(Search.status == QUEUED, _expired(now))


def _locking(session: Session, query: Select[Any]) -> Select[Any]:
    # PostgreSQL: rows another worker is claiming right now are passed over, not waited on
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def next_claimable(session: Session, now: dt.datetime, ripe_before: dt.datetime) -> Search | None:
    """The oldest search a worker may claim now: one queued before ``ripe_before`` (it has
    waited the batch window for companions), or one whose lease has expired."""
    query = (
        select(Search)
        .where(or_((Search.status == QUEUED) & (Search.created_at <= ripe_before), _expired(now)))
        .order_by(Search.id)
        .limit(1)
    )
    return session.scalars(_locking(session, query)).first()


def next_ripe(session: Session) -> dt.datetime | None:
    """When the oldest queued search was queued (None: none is)."""
    return session.scalar(select(func.min(Search.created_at)).where(Search.status == QUEUED))


def companions(session: Session, search: Search, limit: int) -> list[Search]:
    """Queued searches of the same supernet as ``search`` (of any age), oldest first: those
    with the same options (but the cost correction, which prices one table) can share its
    walk of the space."""
    query = (
        select(Search)
        .where(
            Search.supernet_id == search.supernet_id,
            Search.status == QUEUED,
            Search.id != search.id,
        )
        .order_by(Search.id)
    )
    mine = batch_options(search.options)
    rows = session.scalars(_locking(session, query)).all()
    return [row for row in rows if batch_options(row.options) == mine][:limit]


def batch_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options a fleet search must share: all but the cost correction."""
    return {k: v for k, v in options.items() if k != "correction"}


def claim(
    session: Session, search_id: int, owner: str, now: dt.datetime, until: dt.datetime
) -> bool:
    """Take ``search_id`` for ``owner`` until ``until`` if it is still claimable (a
    conditional update: of two workers racing for it, one wins)."""
    result = session.execute(
        update(Search)
        .where(Search.id == search_id, _claimable(now))
        .values(status=RUNNING, lease_owner=owner, lease_expires_at=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew(
    session: Session, ids: list[int], owner: str, now: dt.datetime, until: dt.datetime
) -> int:
    """Extend ``owner``'s lease on the searches ``ids`` it still holds; how many it holds."""
    result = session.execute(
        update(Search)
        .where(Search.id.in_(ids), Search.status == RUNNING, Search.lease_owner == owner)
        .values(lease_expires_at=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish(session: Session, search_id: int, owner: str, values: Mapping[str, Any]) -> bool:
    """Store a search's outcome if ``owner`` still holds it (False: its lease expired and
    another worker took the search over; that worker's outcome is the one stored)."""
    result = session.execute(
        update(Search)
        .where(Search.id == search_id, Search.status == RUNNING, Search.lease_owner == owner)
        .values(**values, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, ids: list[int], owner: str, now: dt.datetime) -> int:
    """Hand back searches ``owner`` holds but will not finish (it is stopping): queued
    again at once instead of after the lease (a split search it was merging: free to merge
    at once)."""
    result = session.execute(
        update(Search)
        .where(Search.id.in_(ids), Search.status == RUNNING, Search.lease_owner == owner)
        .values(
            status=case((Search.shards.is_(None), QUEUED), else_=RUNNING),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# shards ---------------------------------------------------------------------------------


def split(session: Session, ids: list[int], owner: str, count: int, now: dt.datetime) -> list[int]:
    """Split the searches ``ids`` that ``owner`` still holds into ``count`` queued shards
    each, giving up their leases (the shards carry the work now); the ids split."""
    done = []
    for search_id in ids:
        result = session.execute(
            update(Search)
            .where(Search.id == search_id, Search.status == RUNNING, Search.lease_owner == owner)
            .values(shards=count, lease_owner=None, lease_expires_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            done.append(search_id)
    if done:
        session.execute(
            insert(SearchShard),
            [
                {
                    "search_id": search_id,
                    "shard_index": index,
                    "status": QUEUED,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for search_id in done
                for index in range(count)
            ],
        )
    return done


def get_shard(session: Session, shard_id: int) -> SearchShard | None:
    return session.get(SearchShard, shard_id)


def _shard_claimable(now: dt.datetime) -> ColumnElement[bool]:
    """Queued, or running under an expired lease (its worker died or hung)."""
    return or_(
        SearchShard.status == QUEUED,
        (SearchShard.status == RUNNING)
        & (SearchShard.lease_expires_at.is_(None) | (SearchShard.lease_expires_at < now)),
    )


def _locking_shards(session: Session, query: Select[Any]) -> Select[Any]:
    # only the shard rows: locking their search too would make workers claiming two shards
    # of one search at once pass over each other
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=SearchShard)
    return query


def next_shard(session: Session, now: dt.datetime) -> SearchShard | None:
    """The oldest shard a worker may claim now, of a search still running."""
    query = (
        select(SearchShard)
        .join(Search, Search.id == SearchShard.search_id)
        .where(Search.status == RUNNING, _shard_claimable(now))
        .order_by(SearchShard.id)
        .limit(1)
    )
    return session.scalars(_locking_shards(session, query)).first()


def shard_companions(session: Session, shard: SearchShard, limit: int) -> list[SearchShard]:
    """Queued shards of the same index of other searches split alike (same supernet, shard
    count and batched options): they cover the same part of the same space, so one walk
    computes them all."""
    lead = session.get(Search, shard.search_id)
    assert lead is not None
    query = (
        select(SearchShard, Search.options)
        .join(Search, Search.id == SearchShard.search_id)
        .where(
            Search.supernet_id == lead.supernet_id,
            Search.shards == lead.shards,
            Search.status == RUNNING,
            SearchShard.status == QUEUED,
            SearchShard.shard_index == shard.shard_index,
            SearchShard.id != shard.id,
        )
        .order_by(SearchShard.id)
    )
    mine = batch_options(lead.options)
    rows = session.execute(_locking_shards(session, query)).all()
    return [row for row, options in rows if batch_options(options) == mine][:limit]


def claim_shard(
    session: Session, shard_id: int, owner: str, now: dt.datetime, until: dt.datetime
) -> bool:
    """Take shard ``shard_id`` for ``owner`` until ``until`` if it is still claimable (a
    conditional update, as :func:`claim`); counts an attempt."""
    result = session.execute(
        update(SearchShard)
        .where(SearchShard.id == shard_id, _shard_claimable(now))
        .values(
            status=RUNNING,
            lease_owner=owner,
            lease_expires_at=until,
            attempts=SearchShard.attempts + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew_shards(
    session: Session, ids: list[int], owner: str, now: dt.datetime, until: dt.datetime
) -> int:
    """Extend ``owner``'s lease on the shards ``ids`` it still holds; how many it holds."""
    result = session.execute(
        update(SearchShard)
        .where(
            SearchShard.id.in_(ids), SearchShard.status == RUNNING, SearchShard.lease_owner == owner
        )
        .values(lease_expires_at=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish_shard(session: Session, shard_id: int, owner: str, values: Mapping[str, Any]) -> bool:
    """Store a shard's outcome if ``owner`` still holds it (as :func:`finish`)."""
    result = session.execute(
        update(SearchShard)
        .where(
            SearchShard.id == shard_id,
            SearchShard.status == RUNNING,
            SearchShard.lease_owner == owner,
        )
        .values(**values, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_shards(session: Session, ids: list[int], owner: str, now: dt.datetime) -> int:
    """Hand back shards ``owner`` holds but will not finish: queued again at once."""
    result = session.execute(
        update(SearchShard)
        .where(
            SearchShard.id.in_(ids), SearchShard.status == RUNNING, SearchShard.lease_owner == owner
        )
        .values(status=QUEUED, lease_owner=None, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _shards_done() -> ColumnElement[int]:
    """How many shards of the search of the enclosing statement are done."""
    return (
        select(func.count())
        .select_from(SearchShard)
        .where(SearchShard.search_id == Search.id, SearchShard.status == DONE)
        .correlate(Search)
        .scalar_subquery()
    )


def _mergeable(now: dt.datetime) -> ColumnElement[bool]:
    """A split search still running, every shard done, and no live merge lease on it."""
    return (
        (Search.status == RUNNING)
        & Search.shards.is_not(None)
        & (Search.lease_expires_at.is_(None) | (Search.lease_expires_at < now))
        & (_shards_done() == Search.shards)
    )


def next_mergeable(session: Session, now: dt.datetime) -> int | None:
    """A split search whose merge is due: all shards done, and its merger (if any) gone."""
    query = select(Search.id).where(_mergeable(now)).order_by(Search.id).limit(1)
    return session.scalars(_locking(session, query)).first()


def claim_merge(
    session: Session, search_id: int, owner: str, now: dt.datetime, until: dt.datetime
) -> bool:
    """Take the merge of split search ``search_id`` for ``owner`` (its lease) if every shard
    is done and no one holds it (a conditional update: of two finishers, one merges)."""
    result = session.execute(
        update(Search)
        .where(Search.id == search_id, _mergeable(now))
        .values(lease_owner=owner, lease_expires_at=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def shard_fronts(session: Session, search_id: int) -> list[str]:
    """The front blobs of a split search's shards, by shard index."""
    return list(
        session.scalars(
            select(SearchShard.front_sha256)
            .where(SearchShard.search_id == search_id, SearchShard.status == DONE)
            .order_by(SearchShard.shard_index)
        )
    )


def shards_done(session: Session, search_id: int) -> int:
    """How many shards of ``search_id`` are done."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(SearchShard)
            .where(SearchShard.search_id == search_id, SearchShard.status == DONE)
        )
        or 0
    )


def fail_split(session: Session, search_id: int, error: str, now: dt.datetime) -> bool:
    """Fail a split search still running with ``error`` (a shard failed); its shards not
    yet claimed are failed too. False: it had finished or failed already."""
    result = session.execute(
        update(Search)
        .where(Search.id == search_id, Search.status == RUNNING, Search.shards.is_not(None))
        .values(status=FAILED, error=error, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    session.execute(
        update(SearchShard)
        .where(SearchShard.search_id == search_id, SearchShard.status == QUEUED)
        .values(status=FAILED, error="another shard of the search failed", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return True


def latest_profile(session: Session, supernet_id: str, device_id: int) -> Profile | None:
    """The newest profile version of a supernet on a device."""
    return session.scalars(
        select(Profile)
        .where(Profile.supernet_id == supernet_id, Profile.device_id == device_id)
        .order_by(Profile.version.desc())
        .limit(1)
    ).first()


def latest_profile_id(session: Session, supernet_id: str, device_name: str) -> int | None:
    """The id of the newest profile of a supernet on a device (by name), in one query."""
    return session.scalar(
        select(Profile.id)
        .join(Device, Device.id == Profile.device_id)
        .where(Profile.supernet_id == supernet_id, Device.name == device_name)
        .order_by(Profile.version.desc())
        .limit(1)
    )
