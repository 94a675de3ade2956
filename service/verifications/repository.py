"""Queries of verifications and cost corrections."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.devices.models import Device
from service.verifications.models import CostCorrection, Verification


def of_configuration(session: Session, configuration_id: str) -> Sequence[tuple[Verification, str]]:
    """Every verification of a configuration with its device name, oldest first."""
    rows = session.execute(
        select(Verification, Device.name)
        .join(Device, Device.id == Verification.device_id)
        .where(Verification.configuration_id == configuration_id)
        .order_by(Verification.id)
    ).all()
    return [(v, name) for v, name in rows]


def latest(
    session: Session, configuration_id: str, device_id: int, profile_id: int
) -> Verification | None:
    """The newest verification of a configuration against a profile version."""
    return session.scalars(
        select(Verification)
        .where(
            Verification.configuration_id == configuration_id,
            Verification.device_id == device_id,
            Verification.profile_id == profile_id,
        )
        .order_by(Verification.id.desc())
        .limit(1)
    ).first()


def of_profile(session: Session, device_id: int, profile_id: int) -> Sequence[Verification]:
    """Every verification made against a profile version of a device."""
    return session.scalars(
        select(Verification)
        .where(Verification.device_id == device_id, Verification.profile_id == profile_id)
        .order_by(Verification.id)
    ).all()


def of_job(session: Session, job_id: int, lease_id: str) -> Verification | None:
    """The verification a job stored under a lease (an upload retried)."""
    return session.scalars(
        select(Verification).where(Verification.job_id == job_id, Verification.lease_id == lease_id)
    ).first()


def add(session: Session, row: Verification | CostCorrection) -> None:
    session.add(row)
    session.flush()


def latest_correction(session: Session, profile_id: int) -> CostCorrection | None:
    return session.scalars(
        select(CostCorrection)
        .where(CostCorrection.profile_id == profile_id)
        .order_by(CostCorrection.version.desc())
        .limit(1)
    ).first()


def corrections(session: Session, profile_id: int) -> Sequence[CostCorrection]:
    return session.scalars(
        select(CostCorrection)
        .where(CostCorrection.profile_id == profile_id)
        .order_by(CostCorrection.version)
    ).all()
