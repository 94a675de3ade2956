"""``/v1/profiles``: device cost tables per supernet and device, versioned."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from service.auth.deps import AgentPrincipal, CurrentPrincipal
from service.db import after_commit
from service.deps import BlobsDep, SessionDep
from service.devices.schemas import DEVICE_NAME
from service.errors import ErrorResponse, NotFound
from service.profiles import repository, service
from service.profiles.schemas import ProfileCreate, ProfileList, ProfileRead
from service.supernets.service import open_blob
from service.verifications import service as verifications

ProfileId = Annotated[int, Path(ge=1, le=2**62)]
router = APIRouter(
    prefix="/v1/profiles",
    tags=["profiles"],
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)


@router.post(
    "",
    response_model=ProfileRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ProfileRead, "description": "identical upload: the stored version"},
        404: {"model": ErrorResponse, "description": "unknown supernet or device"},
        422: {"model": ErrorResponse, "description": "the table does not fit the supernet"},
    },
)
def upload_profile(
    data: ProfileCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    blobs: BlobsDep,
    principal: AgentPrincipal,
) -> ProfileRead:
    """Upload a ``mess-costs`` v1 table (ms) measured on a registered device."""
    profile, created = service.create_profile(session, blobs, data, principal)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    queries = request.app.state.queries
    # once committed, so that queries resolve the device to this version
    after_commit(session, lambda: queries.forget_profile(profile.supernet_id, data.device))
    return service.detail(profile, data.device)


@router.get("", response_model=ProfileList)
def list_profiles(
    session: SessionDep,
    _who: CurrentPrincipal,
    supernet_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
    device: Annotated[str | None, Query(pattern=DEVICE_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> ProfileList:
    """Profiles, optionally of one supernet and/or device, newest version first."""
    rows = repository.list_profiles(session, supernet_id, device, limit, offset)
    return ProfileList(items=[service.summary(p, d) for p, d in rows])


@router.get("/{profile_id}", response_model=ProfileRead, responses={404: {"model": ErrorResponse}})
def get_profile(profile_id: ProfileId, session: SessionDep, _who: CurrentPrincipal) -> ProfileRead:
    """One profile with its cost table, measurement context and cost corrections."""
    profile, device = service.get_profile(session, profile_id)
    return service.detail(profile, device, verifications.corrections(session, profile.id))


@router.get(
    "/{profile_id}/raw",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {"segment/layer1.0": [0.41, 0.40, 0.42], "head/final": [1.9, 1.9]}
                }
            }
        },
        404: {"model": ErrorResponse},
    },
)
def get_raw_timings(
    profile_id: ProfileId, session: SessionDep, blobs: BlobsDep, _who: CurrentPrincipal
) -> StreamingResponse:
    """The raw timings (ms per part name) uploaded with a profile."""
    profile, _ = service.get_profile(session, profile_id)
    if profile.raw_sha256 is None:
        raise NotFound(f"profile {profile_id} has no raw timings")
    chunks, size = open_blob(blobs, profile.raw_sha256, f"profile {profile_id} raw timings")
    return StreamingResponse(
        chunks, media_type="application/json", headers={"Content-Length": str(size)}
    )
