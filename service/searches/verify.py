"""Verified answers: the best configuration whose measured latency meets the budget.

A query with ``verify`` is answered from the device's front as usual (priced with the
profile's cost correction), then the chosen configuration must have been timed whole on the
device (a verification of that profile version). Without one, a verification job is queued
and the query waits (202 ``verifying`` past ``wait_seconds``). A verification that breaks
the budget refits the correction (:mod:`service.verifications.service`), which makes a new
front: the next round picks from it, passing over every configuration already measured over
the budget. After ``MESS_VERIFY_ROUNDS`` verifications predicted to meet the budget that did
not, or when no candidate is left, the answer is 422 naming the closest verified
configuration (docs/DESIGN.md, "Service").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from service.blobs import BlobStore
from service.configurations.service import get_or_create
from service.devices.service import get_device
from service.errors import Unprocessable
from service.jobs.models import FAILED
from service.jobs.service import request_verification
from service.searches.models import Search
from service.searches.schemas import SearchAnswer, SearchRequest
from service.searches.service import DoneSearch, FrontCache, compose
from service.verifications import repository as verification_rows
from service.verifications import service as verifications
from service.verifications.models import Verification

# front points tried below one budget at most (each already verified over the budget)
MAX_CANDIDATES = 256


def verified_answer(
    session: Session,
    blobs: BlobStore,
    fronts: FrontCache,
    search: Search,
    data: SearchRequest,
    rounds: int,
) -> SearchAnswer | int | None:
    """One round of a verified query on a finished search.

    Returns:
        The answer with its verification; or the id of the verification job to wait for; or
        None when the profile's correction changed since ``search`` was chosen (search again).

    Raises:
        Unprocessable: nothing within budget on the front, a failed verification, or the
            rounds spent (``closest`` names the verified configuration nearest the budget).
    """
    done = DoneSearch.of(search)
    assert done.profile_id is not None and data.cost_budget is not None
    current = verifications.current_correction(session, done.profile_id)
    if verifications.search_option(current) != done.correction:
        return None
    device = get_device(session, data.device)
    budget, worst = data.cost_budget, data.cost_worst_budget
    stored = verification_rows.of_profile(session, device.id, done.profile_id)
    broken = [v for v in stored if v.predicted_expected_ms <= budget < v.expected_ms]
    if len(broken) >= rounds:
        raise _none_verified(stored, budget, worst, device.name, f"{len(broken)} rounds")
    measured = {v.configuration_id: v for v in stored}  # the newest of each
    loaded = fronts.get(blobs, done.front_sha256)
    cap = budget
    for _ in range(MAX_CANDIDATES):
        query = data.model_copy(update={"budget_ms": cap, "budget": None})
        try:
            answer, metrics = compose(loaded, done, query)
        except Unprocessable as exc:
            if cap != budget:
                break
            if not stored:
                raise  # nothing measured yet, nothing predicted to fit: the usual 422
            why = "nothing is predicted to fit once corrected by what was measured"
            raise _none_verified(stored, budget, worst, device.name, why, **exc.extra) from None
        row = get_or_create(session, done.supernet_id, answer.configuration, metrics)
        found = measured.get(row.id)
        if found is None:
            job = request_verification(
                session, done.supernet_id, device.id, row.id, done.profile_id
            )
            if job.status == FAILED:
                raise Unprocessable(
                    f"the verification of configuration {row.id} on {device.name!r} failed: "
                    f"{job.error}",
                    configuration_id=row.id,
                    job_id=job.id,
                )
            return job.id
        if verifications.meets(found, budget, worst):
            return answer.model_copy(update={"verified": verifications.read(found, device.name)})
        cap = math.nextafter(answer.expected_cost, 0.0)  # the next cheaper point
    raise _none_verified(stored, budget, worst, device.name, "no candidate left")


def _none_verified(
    stored: Sequence[Verification],
    budget: float,
    worst: float | None,
    device: str,
    why: str,
    **extra: Any,
) -> Unprocessable:
    def overshoot(v: Verification) -> float:
        ratio = v.expected_ms / budget
        return max(ratio, v.worst_ms / worst) if worst else ratio

    if not stored:
        return Unprocessable(
            f"no configuration verified within the budget on {device!r} ({why})", **extra
        )
    closest = min(stored, key=overshoot)
    return Unprocessable(
        f"no configuration verified within the budget on {device!r} ({why}); the closest "
        f"verified one, {closest.configuration_id}, measured {closest.expected_ms:.3f} ms "
        f"expected and {closest.worst_ms:.3f} ms worst",
        closest=verifications.read(closest, device).model_dump(mode="json"),
        **extra,
    )
