"""Job routes: list (engineer+), and the agent's lease / heartbeat / timings / result /
verification / fail / release."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from service.auth.deps import AgentPrincipal, CurrentPrincipal
from service.db import after_commit
from service.deps import BlobsDep, SessionDep, SettingsDep
from service.devices.models import Device
from service.devices.service import get_device
from service.errors import ErrorResponse
from service.jobs import repository, service, timings
from service.jobs.schemas import (
    ChunkResponse,
    DiscardRequest,
    DiscardResponse,
    FailRequest,
    JobList,
    JobRead,
    JobResult,
    LeasedJob,
    LeaseRef,
    LeaseRequest,
    LeaseResponse,
    ResultResponse,
    StoredTimings,
    TimingsChunk,
    VerificationResponse,
    VerificationResult,
)
from service.supernets.service import get_supernet, open_blob
from service.verifications import service as verifications

JobId = Annotated[int, Path(ge=1, le=2**62)]  # larger ids overflow the database integer
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse, "description": "the lease is not (or no longer) yours"},
}


def _device_name(session: SessionDep, device_id: int) -> str:
    device = session.get(Device, device_id)
    return device.name if device else "?"


@router.get("", response_model=JobList, responses=_ERRORS)
def list_jobs(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: Annotated[str | None, Query(pattern="^(queued|leased|done|failed)$")] = None,
    supernet_id: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
    device: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> JobList:
    """Profiling jobs with their status, supernet and device."""
    principal.require("agent")
    device_id = get_device(session, device).id if device else None
    rows = repository.list_jobs(
        session,
        status=status,
        supernet_id=supernet_id,
        device_id=device_id,
        limit=limit,
        offset=offset,
    )
    return JobList(items=[service.read(job, name) for job, name in rows])


@router.get("/{job_id}", response_model=JobRead, responses=_ERRORS)
def get_job(job_id: JobId, session: SessionDep, principal: CurrentPrincipal) -> JobRead:
    """One job."""
    principal.require("agent")
    job = service.get_job(session, job_id)
    return service.read(job, _device_name(session, job.device_id))


@router.post(
    "/lease",
    response_model=LeaseResponse,
    responses={**_ERRORS, 204: {"description": "no queued job for this device"}},
)
def lease(
    body: LeaseRequest, session: SessionDep, settings: SettingsDep, principal: AgentPrincipal
) -> LeaseResponse | Response:
    """Lease the device's oldest queued job (agents sharing a device name form a pool)."""
    job = service.lease(session, settings, body.device, principal, body.kinds)
    if job is None:
        return Response(status_code=204)
    assert job.lease_id is not None and job.lease_expires_at is not None
    return LeaseResponse(
        job=LeasedJob(
            id=job.id,
            kind=job.kind,
            supernet_id=job.supernet_id,
            configuration_id=job.configuration_id,
            device=body.device,
            lease_id=job.lease_id,
            lease_seconds=settings.lease_seconds,
            lease_expires_at=job.lease_expires_at,
            tier=job.tier,
            configurations=job.configurations or [],
            samples=job.kind == "verify"
            and bool(get_supernet(session, job.supernet_id).manifest.get("samples")),
            exit_fractions=service.verify_fractions(session, job),
            resume=timings.resume_for(session, job),
        )
    )


@router.post("/{job_id}/heartbeat", response_model=JobRead, responses=_ERRORS)
def heartbeat(
    job_id: JobId,
    body: LeaseRef,
    session: SessionDep,
    settings: SettingsDep,
    principal: AgentPrincipal,
) -> JobRead:
    """Extend the lease by ``MESS_LEASE_SECONDS``."""
    job = service.heartbeat(session, settings, job_id, body.lease_id, principal)
    return service.read(job, _device_name(session, job.device_id))


@router.post("/{job_id}/timings", response_model=ChunkResponse, responses=_ERRORS)
def upload_timings(
    job_id: JobId, body: TimingsChunk, session: SessionDep, principal: AgentPrincipal
) -> ChunkResponse:
    """Store a chunk of a profiling job's part timings while it runs (all or nothing); an
    agent leasing the job later times only the parts without."""
    return timings.store_chunk(session, job_id, body, principal)


@router.get("/{job_id}/timings", response_model=StoredTimings, responses=_ERRORS)
def stored_timings(job_id: JobId, session: SessionDep, principal: AgentPrincipal) -> StoredTimings:
    """A profiling job's partial timings, with their measurement context."""
    return timings.read_stored(session, job_id, principal)


@router.post("/{job_id}/timings/discard", response_model=DiscardResponse, responses=_ERRORS)
def discard_timings(
    job_id: JobId, body: DiscardRequest, session: SessionDep, principal: AgentPrincipal
) -> DiscardResponse:
    """Throw the job's partial timings away (measured under another context); the reason
    goes into the profile's context."""
    count = timings.discard(session, job_id, body.lease_id, body.reason, principal)
    return DiscardResponse(job_id=job_id, discarded=count)


@router.post("/{job_id}/result", response_model=ResultResponse, responses=_ERRORS)
def result(
    job_id: JobId,
    body: JobResult,
    request: Request,
    session: SessionDep,
    blobs: BlobsDep,
    principal: AgentPrincipal,
) -> ResultResponse:
    """Upload raw timings; the server computes the cost table (idempotent)."""
    job, profile_id, version = service.submit_result(session, blobs, job_id, body, principal)
    answer = ResultResponse(
        job=service.read(job, _device_name(session, job.device_id)),
        profile_id=profile_id,
        version=version,
    )
    queries = request.app.state.queries
    # once committed, so that queries resolve the device to the new profile version
    after_commit(session, lambda: queries.forget_profile(job.supernet_id, answer.job.device))
    return answer


@router.post("/{job_id}/verification", response_model=VerificationResponse, responses=_ERRORS)
def verification(
    job_id: JobId,
    body: VerificationResult,
    request: Request,
    session: SessionDep,
    blobs: BlobsDep,
    principal: AgentPrincipal,
) -> VerificationResponse:
    """Upload a verify job's per-path timings: stores the verification, refits the device's
    cost correction (idempotent)."""
    job, stored, correction = service.submit_verification(session, blobs, job_id, body, principal)
    device = _device_name(session, job.device_id)
    current = correction or verifications.current_correction(session, stored.profile_id)
    answer = VerificationResponse(
        job=service.read(job, device),
        verification=verifications.read(stored, device),
        correction_version=None if current is None else current.version,
    )
    state = request.app.state
    supernet_id = job.supernet_id
    if correction is not None:  # searches of this device now price with the new correction
        after_commit(session, lambda: state.queries.forget_profile(supernet_id, device))
    after_commit(session, lambda: state.finished_jobs.notify(job_id))
    return answer


@router.get(
    "/{job_id}/samples",
    response_class=StreamingResponse,
    responses={
        **_ERRORS,
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
    },
)
def samples(
    job_id: JobId, session: SessionDep, blobs: BlobsDep, principal: AgentPrincipal
) -> StreamingResponse:
    """A verify job's sample images (the bundle's ``samples.npz``)."""
    sha = service.samples_blob(session, job_id)
    chunks, size = open_blob(blobs, sha, f"sample images of job {job_id}")
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={"Content-Length": str(size), "ETag": f'"{sha}"'},
    )


@router.post("/{job_id}/fail", response_model=JobRead, responses=_ERRORS)
def fail(
    job_id: JobId,
    body: FailRequest,
    request: Request,
    session: SessionDep,
    principal: AgentPrincipal,
) -> JobRead:
    """Record a failed attempt (re-queued until the attempts run out)."""
    job = service.fail(session, job_id, body.lease_id, body.error, principal)
    if job.status == "failed":  # a search waiting for this verification answers at once
        finished = request.app.state.finished_jobs
        after_commit(session, lambda: finished.notify(job_id))
    return service.read(job, _device_name(session, job.device_id))


@router.post("/{job_id}/release", response_model=JobRead, responses=_ERRORS)
def release(
    job_id: JobId, body: LeaseRef, session: SessionDep, principal: AgentPrincipal
) -> JobRead:
    """Give the job back unfinished (the agent is stopping)."""
    job = service.release(session, job_id, body.lease_id, principal)
    return service.read(job, _device_name(session, job.device_id))
