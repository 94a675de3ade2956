"""Device rules: agents register a device by name; registering again updates it."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from service.auth.service import Principal
from service.db import utcnow
from service.devices import repository
from service.devices.models import Device
from service.devices.schemas import DeviceCreate
from service.errors import NotFound

_ATTRIBUTES = tuple(f for f in DeviceCreate.model_fields if f != "name")


class Registration(NamedTuple):
    """A registered device, whether it is new, and whether its measurements are out of date
    (an attribute such as the runtime version changed)."""

    device: Device
    created: bool
    changed: bool


def register(session: Session, data: DeviceCreate, principal: Principal) -> Registration:
    """Create the device ``data.name`` or update its attributes (a concurrent registration
    of the same name is the same device).

    Args:
        session: database session.
        data: name and attributes.
        principal: an agent, engineer or admin.

    Returns:
        The registration.
    """
    principal.require("agent")
    now = utcnow()
    values = data.model_dump() | {
        "created_at": now,
        "updated_at": now,
        "last_seen_at": now,
        "registered_by_id": principal.token_id,
    }
    created = repository.insert_missing(session, values)
    device = repository.get_by_name(session, data.name)
    assert device is not None
    if created:
        return Registration(device, True, False)
    changed = False
    for field in _ATTRIBUTES:
        value = getattr(data, field)
        if getattr(device, field) != value:
            setattr(device, field, value)
            changed = True
    if changed:
        device.updated_at = now
    device.last_seen_at = now
    session.flush()
    return Registration(device, False, changed)


def attributes_of(device: Device) -> dict[str, Any]:
    """The measurement environment a device registered with (every field but its name)."""
    return {field: getattr(device, field) for field in _ATTRIBUTES}


def get_device(session: Session, name: str) -> Device:
    """The device called ``name``, or :class:`NotFound`."""
    device = repository.get_by_name(session, name)
    if device is None:
        raise NotFound(f"device {name!r} not found")
    return device
