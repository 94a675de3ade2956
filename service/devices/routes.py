"""``/v1/devices``: agents register devices; everyone with a token can read them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from service.auth.deps import AgentPrincipal, CurrentPrincipal
from service.deps import HooksDep, SessionDep
from service.devices import repository, service
from service.devices.schemas import DEVICE_NAME, DeviceCreate, DeviceList, DeviceRead
from service.errors import ErrorResponse

router = APIRouter(
    prefix="/v1/devices",
    tags=["devices"],
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)


@router.post(
    "",
    response_model=DeviceRead,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": DeviceRead, "description": "an existing device, updated"}},
)
def register_device(
    data: DeviceCreate,
    response: Response,
    session: SessionDep,
    hooks: HooksDep,
    principal: AgentPrincipal,
) -> DeviceRead:
    """Register a device by name (201), or update its attributes (200)."""
    registration = service.register(session, data, principal)
    hooks.device_registered(session, registration.device.id, registration.changed)
    response.status_code = status.HTTP_201_CREATED if registration.created else status.HTTP_200_OK
    return DeviceRead.model_validate(registration.device)


@router.get("", response_model=DeviceList)
def list_devices(
    session: SessionDep,
    _who: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> DeviceList:
    """Registered devices, by name."""
    rows = repository.list_devices(session, limit, offset)
    return DeviceList(items=[DeviceRead.model_validate(r) for r in rows])


@router.get("/{name}", response_model=DeviceRead, responses={404: {"model": ErrorResponse}})
def get_device(
    name: Annotated[str, Path(pattern=DEVICE_NAME)], session: SessionDep, _who: CurrentPrincipal
) -> DeviceRead:
    """One device."""
    return DeviceRead.model_validate(service.get_device(session, name))
