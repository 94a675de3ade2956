"""Device rules: agents register a device by name; registering again updates it."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth.service import Principal
from service.db import utcnow
from service.devices import repository
from service.devices.models import Device
from service.devices.schemas import DeviceCreate
from service.errors import NotFound

_ATTRIBUTES = tuple(f for f in DeviceCreate.model_fields if f != "name")


def register(session: Session, data: DeviceCreate, principal: Principal) -> tuple[Device, bool]:
    """Create the device ``data.name`` or update its attributes.

    Args:
        session: database session.
        data: name and attributes.
        principal: an agent, engineer or admin.

    Returns:
        The device and whether it was created.
    """
    principal.require("agent")
    now = utcnow()
    device = repository.get_by_name(session, data.name)
    if device is None:
        try:
            with session.begin_nested():  # a concurrent registration of the same name wins
                device = repository.add(
                    session,
                    Device(
                        **data.model_dump(),
                        created_at=now,
                        updated_at=now,
                        last_seen_at=now,
                        registered_by_id=principal.token_id,
                    ),
                )
            _queue_jobs(session, device.id, requeue=False)
            return device, True
        except IntegrityError:
            device = repository.get_by_name(session, data.name)
            assert device is not None
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
    # a new runtime version or thread setting makes new measurements (a new profile version)
    _queue_jobs(session, device.id, requeue=changed)
    return device, False


def _queue_jobs(session: Session, device_id: int, *, requeue: bool) -> None:
    from service.jobs.service import ensure_jobs  # jobs depend on devices, not the reverse

    ensure_jobs(session, device_id=device_id, requeue_done=requeue)


def get_device(session: Session, name: str) -> Device:
    """The device called ``name``, or :class:`NotFound`."""
    device = repository.get_by_name(session, name)
    if device is None:
        raise NotFound(f"device {name!r} not found")
    return device
