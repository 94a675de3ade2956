"""Profile rules: validate a device cost table against its supernet and version it.

A profile is identified by the digest of its content (costs, context and raw timings):
uploading the same content again for the same (supernet, device) returns the stored
version; different content (another context, new timings) becomes the next version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.orm import Session

from mess.bundle import Manifest, check_costs_cover
from mess.costs import CostsError, parse_costs
from service.auth.service import Principal
from service.blobs import BlobStore
from service.db import on_rollback
from service.devices.service import get_device
from service.errors import NotFound, Unprocessable
from service.profiles import repository
from service.profiles.models import Profile
from service.profiles.schemas import ProfileCreate, ProfileRead, ProfileSummary
from service.supernets.service import get_supernet
from service.verifications.schemas import CorrectionRead


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces) for digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def validate_costs(costs: dict[str, Any], manifest: Manifest, raw: dict[str, Any] | None) -> None:
    """Check a device table: a valid ``mess-costs`` v1 in ms covering the supernet's parts.

    Raises:
        Unprocessable: with the first problem.
    """
    try:
        parse_costs(costs)
    except (CostsError, ValueError, TypeError, KeyError) as exc:
        raise Unprocessable(f"invalid costs: {exc}") from None
    if costs.get("unit") != "ms":
        raise Unprocessable(f"device profiles are in ms, not {costs.get('unit')!r}")
    try:
        check_costs_cover(costs, manifest)
    except ValueError as exc:
        raise Unprocessable(f"costs do not fit the supernet: {exc}") from None
    unknown = sorted(set(raw or {}) - set(manifest.parts))
    if unknown:
        raise Unprocessable(f"raw timings for unknown part {unknown[0]!r}")


def create_profile(
    session: Session, blobs: BlobStore, data: ProfileCreate, principal: Principal
) -> tuple[Profile, bool]:
    """Store a device cost table as the next version for (supernet, device).

    Args:
        session: database session; if its unit of work rolls back, the raw blob this
            upload created is deleted again.
        blobs: where raw timings go.
        data: the upload.
        principal: an agent, engineer or admin.

    Returns:
        The profile and whether it was created (False: identical upload, existing version).

    Raises:
        NotFound: unknown supernet or device.
        Unprocessable: the table does not validate.
    """
    principal.require("agent")
    supernet = get_supernet(session, data.supernet_id)
    device = get_device(session, data.device)
    validate_costs(data.costs, Manifest.model_validate(supernet.manifest), data.raw)
    content = {"costs": data.costs, "context": data.context, "raw": data.raw}
    try:
        digest = hashlib.sha256(canonical_json(content)).hexdigest()
    except ValueError as exc:  # NaN or infinity in costs/context
        raise Unprocessable(f"profile is not plain JSON: {exc}") from None
    # versions of the device are allocated one transaction at a time: a concurrent upload
    # of the same content is then seen here, and the next version number is free
    repository.lock_versions(session, device.id)
    existing = repository.find_digest(session, supernet.id, device.id, digest)
    if existing is not None:
        return existing, False
    raw_sha = None
    if data.raw is not None:
        sha, raw_created = blobs.put_bytes(canonical_json(data.raw))
        if raw_created:
            on_rollback(session, lambda: blobs.delete(sha))
        raw_sha = sha
    profile = repository.add(
        session,
        Profile(
            supernet_id=supernet.id,
            device_id=device.id,
            version=repository.latest_version(session, supernet.id, device.id) + 1,
            unit="ms",
            statistic=str(data.costs.get("statistic", "")),
            digest=digest,
            costs=data.costs,
            context=data.context,
            raw_sha256=raw_sha,
            created_by_id=principal.token_id,
        ),
    )
    return profile, True


def get_profile(session: Session, profile_id: int) -> tuple[Profile, str]:
    """A profile and its device name, or :class:`NotFound`."""
    found = repository.get(session, profile_id)
    if found is None:
        raise NotFound(f"profile {profile_id} not found")
    return found


def summary(profile: Profile, device: str) -> ProfileSummary:
    """The list entry of a profile."""
    return ProfileSummary(
        id=profile.id,
        supernet_id=profile.supernet_id,
        device=device,
        version=profile.version,
        unit=profile.unit,
        statistic=profile.statistic,
        digest=profile.digest,
        has_raw=profile.raw_sha256 is not None,
        created_at=profile.created_at,
    )


def detail(
    profile: Profile, device: str, corrections: list[CorrectionRead] | None = None
) -> ProfileRead:
    """A profile with its table, context and cost corrections."""
    return ProfileRead(
        **summary(profile, device).model_dump(),
        costs=profile.costs,
        context=profile.context,
        corrections=corrections or [],
    )
