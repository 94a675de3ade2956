"""Job queue rules: creation, leasing, heartbeats, results, failures.

- A job exists per (supernet, device); it is created when a supernet is pushed (for every
  registered device) and when a device registers (for every stored supernet): the app
  points the hooks of those routes (:mod:`service.hooks`) at :func:`ensure_for_supernet`
  and :func:`ensure_for_device`.
- ``lease`` first re-queues jobs whose lease expired (an attempt is counted; past
  ``max_attempts`` the job fails with its error), then hands the device's oldest queued job
  to the caller under a fresh lease id. Agents sharing a device name form a pool.
- Results are idempotent: the same timings sent twice give the same profile version; the
  server computes the statistics (median per part, p90 kept in the context) from raw timings.
  A result is the timings the job's agents uploaded in chunks plus its own
  (:mod:`service.jobs.timings`).
- A verification job (kind ``verify``) times one configuration's tailored model whole on the
  device, path by path; it is queued by a search asked to verify its answer
  (:func:`request_verification`) and its result becomes a verification
  (:mod:`service.verifications`). Agents lease only the kinds they name.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from mess.bundle import Manifest, load_samples
from mess.costs import CostsError
from mess.stats import load_stats
from mess.timings import costs_from_timings
from service.auth.service import Principal
from service.blobs import BlobStore
from service.configurations.service import get_configuration
from service.db import utcnow
from service.devices.models import Device
from service.devices.service import get_device
from service.errors import Conflict, NotFound, Unprocessable
from service.jobs import repository, timings
from service.jobs.models import DONE, FAILED, LEASED, PROFILE, QUEUED, VERIFY, Job
from service.jobs.schemas import JobRead, JobResult, VerificationResult
from service.profiles.schemas import ProfileCreate
from service.profiles.service import create_profile, get_profile
from service.settings import Settings
from service.supernets.service import get_supernet
from service.verifications import service as verifications
from service.verifications.latency import predicted_exits
from service.verifications.models import CostCorrection, Verification

log = logging.getLogger(__name__)
MAX_CLAIM_TRIES = 8


def whole_configurations(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Configurations whose path does not depend on the input, timed whole by agents.

    The original network alone; a static exit half-way down; the first exit always taken
    (image threshold 0). Their measured latency against the sum of their parts' medians is
    the gap the service reports per device.
    """
    exits = manifest.get("exits") or []
    thresholds = (manifest.get("source") or {}).get("pixel_thresholds") or []
    configs: list[dict[str, Any]] = [{"exits": [], "terminal": "final"}]
    if exits:
        configs.append({"exits": [], "terminal": exits[len(exits) // 2]["id"]})
        if thresholds:
            first = {"id": exits[0]["id"], "pixel_threshold": thresholds[0], "image_threshold": 0.0}
            configs.append({"exits": [first], "terminal": "final"})
    return configs


def ensure_for_supernet(session: Session, supernet_id: str) -> int:
    """Create the jobs of a new supernet, one per registered device.

    Returns:
        The number of jobs created.
    """
    created = _ensure(session, [supernet_id], repository.device_ids(session), False)
    log.info("supernet %s: %d profiling job(s) queued", supernet_id[:12], created)
    return created


def ensure_for_device(session: Session, device_id: int, requeue_done: bool = False) -> int:
    """Create the missing jobs of a device, one per stored supernet.

    With ``requeue_done``, finished or failed jobs are queued again (the device changed).

    Returns:
        The number of jobs created or re-queued.
    """
    if requeue_done:  # partial timings measured under the old attributes are of no use
        device = session.get(Device, device_id)
        if device is not None:
            timings.discard_for_device(session, device)
    return _ensure(session, repository.supernet_ids(session), [device_id], requeue_done)


def _ensure(
    session: Session, supernets: Sequence[str], devices: Sequence[int], requeue_done: bool
) -> int:
    count = 0
    for sid in supernets:
        configurations = whole_configurations(get_supernet(session, sid).manifest)
        for did in devices:
            if repository.insert_missing(session, sid, did, configurations):
                count += 1
            elif requeue_done:
                job = repository.find(session, sid, did)
                if job is not None and job.status in (DONE, FAILED):
                    job.status, job.attempts, job.error = QUEUED, 0, None
                    job.updated_at = utcnow()
                    count += 1
    session.flush()
    return count


def _requeue_expired(session: Session, now: dt.datetime) -> None:
    for job in repository.expire_leases(session, now):
        job.attempts += 1
        job.lease_id = None
        job.lease_expires_at = None
        job.updated_at = now
        if job.attempts >= job.max_attempts:
            job.status = FAILED
            job.error = job.error or f"lease expired {job.attempts} times without a result"
        else:
            job.status = QUEUED
    session.flush()


def lease(
    session: Session,
    settings: Settings,
    device: str,
    principal: Principal,
    kinds: Sequence[str] = (PROFILE,),
) -> Job | None:
    """Lease the device's oldest queued job of ``kinds``, or None when there is none."""
    principal.require("agent")
    target = get_device(session, device)
    now = utcnow()
    _requeue_expired(session, now)
    tried: list[int] = []
    for _ in range(MAX_CLAIM_TRIES):
        job_id = repository.next_queued(session, target.id, kinds, tried)
        if job_id is None:
            return None
        lease_id = secrets.token_hex(16)
        expires = now + dt.timedelta(seconds=settings.lease_seconds)
        if repository.claim(session, job_id, lease_id, expires, principal.name, now):
            job = repository.get(session, job_id)
            assert job is not None
            session.refresh(job)
            return job
        tried.append(job_id)  # another agent of the pool won it
    return None


def verify_fractions(session: Session, job: Job) -> list[float] | None:
    """A verify job's exit fractions (those its verification is combined with), by which
    the agent mixes the paths it times; None for other jobs."""
    if job.kind != VERIFY or job.configuration_id is None:
        return None
    fractions = get_configuration(session, job.configuration_id).metrics.get("exit_fractions")
    return [float(f) for f in fractions] if fractions else None


def _held(session: Session, job_id: int, lease_id: str) -> Job:
    job = get_job(session, job_id)
    if job.status != LEASED or job.lease_id != lease_id:
        raise Conflict(f"job {job_id} is not leased under this lease (status {job.status})")
    return job


def heartbeat(
    session: Session, settings: Settings, job_id: int, lease_id: str, principal: Principal
) -> Job:
    """Extend the lease; 409 when it was lost (expired and re-leased, or finished)."""
    principal.require("agent")
    get_job(session, job_id)
    expires = utcnow() + dt.timedelta(seconds=settings.lease_seconds)
    if not repository.extend(session, job_id, lease_id, expires):
        raise Conflict(f"job {job_id}: lease lost")
    job = get_job(session, job_id)
    session.refresh(job)
    return job


def release(session: Session, job_id: int, lease_id: str, principal: Principal) -> Job:
    """Give a leased job back unfinished (agent stopping); not counted as an attempt."""
    principal.require("agent")
    job = _held(session, job_id, lease_id)
    job.status, job.lease_id, job.lease_expires_at = QUEUED, None, None
    job.updated_at = utcnow()
    return job


def fail(session: Session, job_id: int, lease_id: str, error: str, principal: Principal) -> Job:
    """Record a failed attempt; re-queued until ``max_attempts``, then failed for good."""
    principal.require("agent")
    job = _held(session, job_id, lease_id)
    job.attempts += 1
    job.error = error[:4000]
    job.lease_id, job.lease_expires_at = None, None
    job.status = FAILED if job.attempts >= job.max_attempts else QUEUED
    job.updated_at = utcnow()
    return job


def predicted_path_ms(manifest: Manifest, costs: dict[str, Any], config: dict[str, Any]) -> float:
    """Latency the cost table predicts for an input-independent configuration."""
    order = [p.name for p in manifest.positions]
    position = {e.id: e.position for e in manifest.exits}
    exits = config.get("exits") or []
    terminal = config.get("terminal", "final")
    if exits and float(exits[0].get("image_threshold", 1)) <= 0.0:
        first = exits[0]["id"]  # always leaves at the first exit
        depth = order.index(position[first])
        return sum(costs["segments"][n] for n in order[: depth + 1]) + costs["heads"][first]
    if terminal == "final":
        return sum(costs["segments"].values()) + costs["heads"]["final"]
    depth = order.index(position[terminal])
    return sum(costs["segments"][n] for n in order[: depth + 1]) + costs["heads"][terminal]


def submit_result(
    session: Session, blobs: BlobStore, job_id: int, data: JobResult, principal: Principal
) -> tuple[Job, int, int]:
    """Store the timings as a profile version and finish the job (idempotent).

    Returns:
        ``(job, profile id, profile version)``.
    """
    principal.require("agent")
    job = get_job(session, job_id)
    if job.kind != PROFILE:
        raise Unprocessable(f"job {job_id} is a {job.kind} job: upload its result to /verification")
    if job.status == DONE and job.lease_id == data.lease_id and job.profile_id is not None:
        done, _ = get_profile(session, job.profile_id)  # a retried upload: the same profile
        return job, done.id, done.version
    if job.status != LEASED or job.lease_id != data.lease_id:
        raise Conflict(f"job {job_id} is not leased under this lease (status {job.status})")
    supernet = get_supernet(session, job.supernet_id)
    manifest = Manifest.model_validate(supernet.manifest)
    raw, resumed = timings.merge_result(session, job, data.lease_id, data.timings, data.context)
    try:
        costs = costs_from_timings(manifest, raw)
    except CostsError as exc:
        raise Unprocessable(str(exc)) from None
    p90 = {name: float(np.percentile(v, 90)) for name, v in raw.items()}
    wholes = []
    for whole in data.wholes:
        measured = float(statistics.median(whole.samples_ms))
        predicted = predicted_path_ms(manifest, costs, whole.configuration)
        wholes.append(
            {
                "configuration": whole.configuration,
                "measured_ms": measured,
                "predicted_ms": predicted,
                "gap": measured / predicted - 1 if predicted > 0 else None,
            }
        )
    device = session.get(Device, job.device_id)
    assert device is not None
    context = dict(data.context) | {"p90_ms": p90, "wholes": wholes, "job_id": job.id}
    if resumed is not None:
        context["resume"] = resumed
    profile, _ = create_profile(
        session,
        blobs,
        ProfileCreate(
            supernet_id=job.supernet_id,
            device=device.name,
            costs=costs,
            context=context,
            raw=raw,
        ),
        principal,
    )
    job = get_job(session, job_id)
    timings.finish(session, job)
    job.status, job.profile_id, job.error = DONE, profile.id, None
    job.lease_expires_at = None
    job.updated_at = utcnow()
    return job, profile.id, profile.version


def request_verification(
    session: Session, supernet_id: str, device_id: int, configuration_id: str, profile_id: int
) -> Job:
    """The verification job of a configuration on a device against ``profile_id``: queued
    unless it exists; a finished or failed one checked against another profile version is
    queued again (the device changed: it must be measured again)."""
    repository.insert_verification(session, supernet_id, device_id, configuration_id, profile_id)
    job = repository.find(session, supernet_id, device_id, configuration_id)
    assert job is not None
    if job.profile_id != profile_id and job.status in (DONE, FAILED):
        job.status, job.attempts, job.error, job.profile_id = QUEUED, 0, None, profile_id
        job.updated_at = utcnow()
        session.flush()
    return job


def samples_blob(session: Session, job_id: int) -> str:
    """sha256 of the sample images a verify job runs (404 when its bundle has none)."""
    job = get_job(session, job_id)
    samples = get_supernet(session, job.supernet_id).manifest.get("samples")
    if job.kind != VERIFY or not samples:
        raise NotFound(f"job {job_id} has no sample images")
    return str(samples["sha256"])


def _images(
    blobs: BlobStore, manifest: dict[str, Any], stats_sha: str, config: dict[str, Any], got: Any
) -> dict[str, Any]:
    """The agent's run of the sample images against the exits the statistics predict."""
    samples = manifest.get("samples")
    if not samples:
        raise Unprocessable("the bundle has no sample images to report on")
    _, expected = load_samples(
        b"".join(blobs.iter_chunks(samples["sha256"])), tuple(manifest["input_size"])
    )
    try:
        indices = [int(i) for i in got["indices"]]
        exits = [int(e) for e in got["exits"]]
        ms = [float(t) for t in got["ms"]]
    except (KeyError, TypeError, ValueError):
        raise Unprocessable("images needs indices, exits and ms lists") from None
    paths = len(config.get("exits") or []) + 1
    if sorted(indices) != sorted(expected.tolist()) or not len(exits) == len(ms) == len(indices):
        raise Unprocessable("images must report every sample image once")
    if any(not 0 <= e < paths for e in exits) or any(not t >= 0 for t in ms):
        raise Unprocessable(f"exits must lie in 0..{paths - 1}, times be non-negative")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stats.npz"
        path.write_bytes(b"".join(blobs.iter_chunks(stats_sha)))
        stats = load_stats(path)
    predicted = predicted_exits(
        stats.confidence,
        [str(e["id"]) for e in stats.meta["exits"]],
        stats.meta["pixel_thresholds"],
        config,
        indices,
    )
    agree = sum(a == b for a, b in zip(exits, predicted, strict=True))
    return {
        "indices": indices,
        "exits": exits,
        "predicted_exits": predicted,
        "ms": ms,
        "mean_ms": sum(ms) / len(ms),
        "agreement": agree / len(indices),
    }


def submit_verification(
    session: Session,
    blobs: BlobStore,
    job_id: int,
    data: VerificationResult,
    principal: Principal,
) -> tuple[Job, Verification, CostCorrection | None]:
    """Store a verification job's path timings and finish it (idempotent).

    Returns:
        ``(job, verification, the profile's new correction version or None)``.
    """
    principal.require("agent")
    job = get_job(session, job_id)
    if job.kind != VERIFY:
        raise Unprocessable(f"job {job_id} is a {job.kind} job: upload its result to /result")
    if job.status == DONE and job.lease_id == data.lease_id:
        done = verifications.repository.of_job(session, job_id, data.lease_id)
        if done is not None:  # a retried upload of the same result
            return job, done, None
    if job.status != LEASED or job.lease_id != data.lease_id:
        raise Conflict(f"job {job_id} is not leased under this lease (status {job.status})")
    assert job.configuration_id is not None and job.profile_id is not None
    row = get_configuration(session, job.configuration_id)
    supernet = get_supernet(session, job.supernet_id)
    manifest = supernet.manifest
    profile, _ = get_profile(session, job.profile_id)
    images = None
    if data.images is not None:
        images = _images(blobs, manifest, supernet.stats_sha256, row.configuration, data.images)
    verification, correction = verifications.record(
        session,
        job_id=job.id,
        lease_id=data.lease_id,
        configuration_id=row.id,
        configuration=row.configuration,
        device_id=job.device_id,
        profile_id=profile.id,
        costs=profile.costs,
        exit_positions={str(e["id"]): str(e["position"]) for e in manifest["exits"]},
        fractions=row.metrics.get("exit_fractions") or [],
        samples_ms=data.paths,
        context=data.context,
        images=images,
    )
    job.status, job.error, job.lease_expires_at = DONE, None, None
    job.updated_at = utcnow()
    return job, verification, correction


def get_job(session: Session, job_id: int) -> Job:
    job = repository.get(session, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def read(job: Job, device: str) -> JobRead:
    return JobRead(
        id=job.id,
        kind=job.kind,
        supernet_id=job.supernet_id,
        configuration_id=job.configuration_id,
        device=device,
        status=job.status,
        tier=job.tier,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        lease_expires_at=job.lease_expires_at,
        error=job.error,
        profile_id=job.profile_id,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )
