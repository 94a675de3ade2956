"""Verification rules: combine measured path times, learn the device's cost correction.

A verification job's agent times every exit path of a configuration's tailored model whole
(:func:`mess.onnx.force_paths`). :func:`record` turns the per-path samples into the
configuration's measured latency (:func:`~service.verifications.latency.combine`, with the
exit fractions of the calibration split) and refits the correction of the profile version it
checked over every verified path of that version (docs/DESIGN.md, "Service"). A changed fit
is stored as the profile's next correction version; searches of that device and profile
version then use the corrected table (a new search key, a new front).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from service.errors import Unprocessable
from service.verifications import repository
from service.verifications.latency import IDENTITY, Correction, combine, fit, path_costs
from service.verifications.models import CostCorrection, Verification
from service.verifications.schemas import CorrectionRead, Verified

# a refit this close to the stored one is no new version (no new front for nothing)
SAME_FIT = 1e-6


def correction_of(row: CostCorrection | None) -> Correction:
    return IDENTITY if row is None else Correction(row.scale, row.offset_ms)


def search_option(row: CostCorrection | None) -> dict[str, Any] | None:
    """What a search's options record of the correction it prices with (None: none yet)."""
    if row is None:
        return None
    return {"version": row.version, "scale": row.scale, "offset_ms": row.offset_ms}


def current_correction(session: Session, profile_id: int | None) -> CostCorrection | None:
    return None if profile_id is None else repository.latest_correction(session, profile_id)


def record(
    session: Session,
    *,
    job_id: int,
    lease_id: str,
    configuration_id: str,
    configuration: Mapping[str, Any],
    device_id: int,
    profile_id: int,
    costs: Mapping[str, Any],
    exit_positions: Mapping[str, str],
    fractions: Sequence[float],
    samples_ms: Sequence[Sequence[float]],
    context: Mapping[str, Any],
    images: Mapping[str, Any] | None = None,
) -> tuple[Verification, CostCorrection | None]:
    """Store one verification and refit the profile's correction.

    Returns:
        The verification and the new correction version (None: the fit did not change).

    Raises:
        Unprocessable: not one sample list per exit path, or fractions that do not fit.
    """
    predicted = path_costs(costs, exit_positions, configuration)
    if len(samples_ms) != len(predicted):
        raise Unprocessable(
            f"the configuration has {len(predicted)} exit paths, the result {len(samples_ms)}"
        )
    # a mean, not the median of the part tables: the expected latency of a deployment is a
    # mean over images, stalls and interference included (the correction learns the gap)
    paths = [float(statistics.fmean(s)) for s in samples_ms]
    try:
        measured = combine(paths, fractions)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    before = current_correction(session, profile_id)
    correction = correction_of(before)
    verification = Verification(
        configuration_id=configuration_id,
        device_id=device_id,
        profile_id=profile_id,
        job_id=job_id,
        lease_id=lease_id,
        paths_ms=paths,
        predicted_paths_ms=predicted,
        exit_fractions=[float(f) for f in fractions],
        expected_ms=measured.expected,
        worst_ms=measured.worst,
        p90_ms=measured.p90,
        predicted_expected_ms=math.fsum(
            f * correction.apply(p) for f, p in zip(fractions, predicted, strict=True)
        ),
        correction_version=None if before is None else before.version,
        exit_agreement=None if images is None else images.get("agreement"),
        images=dict(images) if images is not None else None,
        context=dict(context),
    )
    repository.add(session, verification)
    return verification, refit(session, device_id, profile_id, before)


def refit(
    session: Session, device_id: int, profile_id: int, before: CostCorrection | None
) -> CostCorrection | None:
    """Fit the correction over every verified path of the profile version; store it as the
    next version when it changed."""
    rows = repository.of_profile(session, device_id, profile_id)
    xs = [x for v in rows for x in v.predicted_paths_ms]
    ys = [y for v in rows for y in v.paths_ms]
    fitted = fit(xs, ys)
    if before is not None and (
        abs(fitted.scale - before.scale) <= SAME_FIT * max(1.0, before.scale)
        and abs(fitted.offset_ms - before.offset_ms) <= SAME_FIT * max(1.0, before.offset_ms)
    ):
        return None
    row = CostCorrection(
        profile_id=profile_id,
        version=1 if before is None else before.version + 1,
        scale=fitted.scale,
        offset_ms=fitted.offset_ms,
        paths=len(xs),
        verifications=len(rows),
    )
    repository.add(session, row)
    return row


def meets(v: Verification, budget: float | None, worst_budget: float | None) -> bool:
    """Whether the measured latency honours the budgets."""
    return (budget is None or v.expected_ms <= budget) and (
        worst_budget is None or v.worst_ms <= worst_budget
    )


def read(v: Verification, device: str) -> Verified:
    return Verified(
        id=v.id,
        configuration_id=v.configuration_id,
        device=device,
        profile_id=v.profile_id,
        expected_ms=v.expected_ms,
        worst_ms=v.worst_ms,
        p90_ms=v.p90_ms,
        paths_ms=list(v.paths_ms),
        predicted_paths_ms=list(v.predicted_paths_ms),
        exit_fractions=list(v.exit_fractions),
        predicted_expected_ms=v.predicted_expected_ms,
        correction_version=v.correction_version,
        exit_agreement=v.exit_agreement,
        images=v.images,
        context=dict(v.context),
        measured_at=v.measured_at,
    )


def read_correction(row: CostCorrection) -> CorrectionRead:
    return CorrectionRead(
        version=row.version,
        scale=row.scale,
        offset_ms=row.offset_ms,
        paths=row.paths,
        verifications=row.verifications,
        created_at=row.created_at,
    )


def of_configuration(session: Session, configuration_id: str) -> list[Verified]:
    return [read(v, name) for v, name in repository.of_configuration(session, configuration_id)]


def corrections(session: Session, profile_id: int) -> list[CorrectionRead]:
    return [read_correction(c) for c in repository.corrections(session, profile_id)]
