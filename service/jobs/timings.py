"""Partial timings of a profiling job: uploaded in chunks while it runs, resumed by the next
lease.

- An agent uploads its parts' raw timings as it goes (``POST /v1/jobs/{id}/timings``), under
  the lease it holds: a lease that is not the caller's, or has run out, is a 409. A chunk is
  stored whole or not at all: unknown parts, bad numbers, a part already stored with other
  values or another measurement context refuse it (422) and keep what was stored.
- The rows outlive the lease. Whoever leases the job next is told which parts are timed and
  under which context (:func:`resume_for`); it times only the others, or, measuring under
  another context, discards them first (:func:`discard`, with its reason). A device that
  registers again with other attributes discards its jobs' partial timings itself.
- The result is the stored timings plus the rest (:func:`merge_result`); the profile's
  context says how many parts came from earlier leases and what was discarded. Once the job
  is done its rows are deleted: the profile holds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from service.auth.service import Principal
from service.db import utcnow
from service.devices.models import Device
from service.devices.service import attributes_of
from service.errors import Conflict, NotFound, Unprocessable
from service.jobs import repository
from service.jobs.models import LEASED, PROFILE, Job
from service.jobs.schemas import ChunkResponse, Resume, StoredPart, StoredTimings, TimingsChunk
from service.supernets.service import get_supernet


def _job(session: Session, job_id: int) -> Job:
    job = repository.get(session, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def held_now(session: Session, job_id: int, lease_id: str) -> Job:
    """The profiling job ``job_id`` if ``lease_id`` holds it and has not run out (409)."""
    job = _job(session, job_id)
    if job.status != LEASED or job.lease_id != lease_id:
        raise Conflict(f"job {job_id} is not leased under this lease (status {job.status})")
    expires = job.lease_expires_at
    if expires is not None and expires < utcnow():
        raise Conflict(
            f"the lease of job {job_id} ran out at {expires.isoformat()}: lease the job again"
        )
    if job.kind != PROFILE:
        raise Unprocessable(f"job {job_id} is a {job.kind} job: it takes no partial timings")
    return job


def _differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """``key: stored -> given`` for every key whose value differs."""
    return [
        f"{key}: {stored.get(key)!r} -> {given.get(key)!r}"
        for key in sorted(set(stored) | set(given))
        if stored.get(key) != given.get(key)
    ]


def store_chunk(
    session: Session, job_id: int, data: TimingsChunk, principal: Principal
) -> ChunkResponse:
    """Store a chunk of a job's part timings, all of it or nothing (see the module)."""
    principal.require("agent")
    job = held_now(session, job_id, data.lease_id)
    parts = set(get_supernet(session, job.supernet_id).manifest.get("parts") or {})
    unknown = sorted(set(data.timings) - parts)
    if unknown:
        raise Unprocessable(f"the supernet has no part {unknown[0]!r}")
    stray = sorted((set(data.signatures) | set(data.shared_from)) - set(data.timings))
    if stray:
        raise Unprocessable(f"signature or shared_from given for part {stray[0]!r} without timings")
    foreign = sorted(set(data.shared_from.values()) - parts)
    if foreign:
        raise Unprocessable(f"shared_from names {foreign[0]!r}, not a part of the supernet")
    held = repository.count_timings(session, job.id)
    stored = repository.timings(session, job.id, list(data.timings)) if held else {}
    if held and job.timings_context is not None and data.context != job.timings_context:
        changed = "; ".join(_differences(job.timings_context, data.context))
        raise Unprocessable(
            f"the chunk's measurement context differs from that of the {held} part(s) "
            f"stored ({changed[:500]}): discard them first (POST /v1/jobs/{job_id}/timings/"
            "discard)"
        )
    unchanged = 0
    for name, samples in data.timings.items():
        row = stored.get(name)
        if row is None:
            continue
        if row.samples_ms != samples:
            raise Unprocessable(
                f"part {name!r} already has other timings stored ({len(row.samples_ms)} runs)"
            )
        unchanged += 1
    if not held:
        job.timings_context = data.context
        device = session.get(Device, job.device_id)
        job.timings_device = attributes_of(device) if device is not None else None
    now = utcnow()
    added = 0
    for name, samples in data.timings.items():
        if name in stored:
            continue
        values = {
            "job_id": job.id,
            "part": name,
            "samples_ms": samples,
            "signature": data.signatures.get(name),
            "shared_from": data.shared_from.get(name),
            "lease_id": data.lease_id,
            "created_at": now,
        }
        if not repository.insert_timing(session, values):  # a concurrent retry stored it
            row = repository.timings(session, job.id, [name])[name]
            if row.samples_ms != samples:
                raise Unprocessable(f"part {name!r} already has other timings stored")
            unchanged += 1
        else:
            added += 1
    job.updated_at = now
    total = held + added
    return ChunkResponse(
        job_id=job.id, stored=added, unchanged=unchanged, parts=total, missing=len(parts) - total
    )


def read_stored(session: Session, job_id: int, principal: Principal) -> StoredTimings:
    """A job's stored partial timings, with their context."""
    principal.require("agent")
    job = _job(session, job_id)
    rows = repository.timings(session, job.id)
    return StoredTimings(
        job_id=job.id,
        context=job.timings_context if rows else None,
        device=job.timings_device if rows else None,
        parts={
            name: StoredPart(
                samples_ms=row.samples_ms, signature=row.signature, shared_from=row.shared_from
            )
            for name, row in rows.items()
        },
        discarded=list(job.timings_discarded or []),
    )


def _discard(session: Session, job: Job, reason: str) -> int:
    count = repository.delete_timings(session, job.id)
    if count:
        note = {"reason": reason, "parts": count, "at": utcnow().isoformat()}
        job.timings_discarded = [*(job.timings_discarded or []), note]
    job.timings_context = job.timings_device = None
    job.updated_at = utcnow()
    session.flush()
    return count


def discard(session: Session, job_id: int, lease_id: str, reason: str, principal: Principal) -> int:
    """Throw a job's partial timings away (the caller measures under another context).

    Returns:
        How many parts' timings went.
    """
    principal.require("agent")
    return _discard(session, held_now(session, job_id, lease_id), reason)


def discard_for_device(session: Session, device: Device) -> int:
    """Discard the partial timings of the device's jobs measured under attributes it no
    longer has (it registered again with another runtime, thread count, ...).

    Returns:
        How many jobs lost theirs.
    """
    now = attributes_of(device)
    count = 0
    for job in repository.with_timings(session, device.id):
        changed = _differences(job.timings_device or {}, now)
        if changed:
            _discard(session, job, "the device registered again with " + "; ".join(changed))
            count += 1
    return count


def resume_for(session: Session, job: Job) -> Resume | None:
    """What a new lease of a profiling job need not time again (None: nothing)."""
    if job.kind != PROFILE:
        return None
    parts = repository.timed_parts(session, job.id)
    if not parts:
        return None
    return Resume(parts=list(parts), context=job.timings_context or {})


def merge_result(
    session: Session,
    job: Job,
    lease_id: str,
    timings: dict[str, list[float]],
    context: dict[str, Any],
) -> tuple[dict[str, list[float]], dict[str, Any] | None]:
    """The job's stored timings plus the result's, checked to agree.

    The result may leave out parts stored already; one it sends again must carry the same
    values, and its context must hold the stored timings' context.

    Returns:
        ``(every part's timings, the record of resumed or discarded work, or None)``.

    Raises:
        Unprocessable: a disagreement.
    """
    stored = repository.timings(session, job.id)
    if stored:
        expected = job.timings_context or {}
        changed = _differences(expected, {key: context.get(key) for key in expected})
        if changed:
            raise Unprocessable(
                f"the result's measurement context differs from that of the {len(stored)} "
                f"part(s) stored in chunks ({'; '.join(changed)[:500]}): discard them first"
            )
    for name, row in stored.items():
        if name in timings and timings[name] != row.samples_ms:
            raise Unprocessable(f"part {name!r}: the result's timings differ from those stored")
    merged = {name: row.samples_ms for name, row in stored.items()} | timings
    earlier = [row.lease_id for row in stored.values() if row.lease_id != lease_id]
    discarded = list(job.timings_discarded or [])
    if not earlier and not discarded:
        return merged, None
    return merged, {
        "parts": len(earlier),
        "leases": len(set(earlier)),
        "discarded": discarded,
    }


def finish(session: Session, job: Job) -> None:
    """The job is done: its partial timings are in the profile now."""
    repository.delete_timings(session, job.id)
    job.timings_context = job.timings_device = None
    job.timings_discarded = None
