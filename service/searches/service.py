"""Search rules: one exact front per (supernet, cost table, options), answered from storage.

``POST /v1/search`` finds or queues the search of its key; a worker thread computes the
front off the request path (:mod:`service.searches.worker`); once stored, every budget query
on the same key is answered from the front in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mess.search import NoFeasibleConfiguration, ParetoFront
from service.auth.service import Principal
from service.blobs import BlobStore
from service.configurations.service import get_or_create
from service.devices.service import get_device
from service.errors import NotFound, Unprocessable
from service.searches import repository
from service.searches.models import DONE, FAILED, Search
from service.searches.schemas import SearchAnswer, SearchRead, SearchRequest
from service.supernets.service import get_supernet

GFLOPS = "gflops"


def _key(supernet_id: str, profile_id: int | None, options: dict[str, Any]) -> str:
    body = {"supernet": supernet_id, "profile": profile_id or GFLOPS, "options": options}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def request_search(session: Session, data: SearchRequest, principal: Principal) -> Search:
    """The search answering ``data``: existing (any status) or newly queued."""
    principal.require("engineer")
    supernet = get_supernet(session, data.supernet_id)
    profile_id, unit = None, GFLOPS
    if data.device != GFLOPS:
        device = get_device(session, data.device)
        profile = repository.latest_profile(session, supernet.id, device.id)
        if profile is None:
            raise NotFound(
                f"no profile of supernet {supernet.id[:12]} on device {data.device!r} yet: "
                "run mess-agent on that device (GET /v1/jobs shows its queue)"
            )
        profile_id, unit = profile.id, profile.unit
    options = data.options()
    key = _key(supernet.id, profile_id, options)
    search = repository.by_key(session, key)
    if search is not None:
        return search  # the common case, read-only
    try:
        with session.begin_nested():
            search = repository.add(
                session,
                Search(
                    key=key,
                    supernet_id=supernet.id,
                    profile_id=profile_id,
                    unit=unit,
                    options=options,
                ),
            )
    except IntegrityError:  # the same search was requested concurrently
        search = repository.by_key(session, key)
        assert search is not None
    session.commit()
    return search


class FrontCache:
    """Fronts by blob sha256, most recently used kept (they are immutable)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.items: OrderedDict[str, ParetoFront] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, blobs: BlobStore, sha: str) -> ParetoFront:
        with self.lock:
            if sha in self.items:
                self.items.move_to_end(sha)
                return self.items[sha]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "front.npz"
            path.write_bytes(b"".join(blobs.iter_chunks(sha)))
            front = ParetoFront.load(path)
        with self.lock:
            self.items[sha] = front
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return front


def answer(
    session: Session, blobs: BlobStore, fronts: FrontCache, search: Search, data: SearchRequest
) -> SearchAnswer:
    """Answer ``data`` from the stored front of ``search``."""
    if search.status == FAILED:
        raise Unprocessable(f"the search failed: {search.error}")
    assert search.status == DONE and search.front_sha256 is not None
    front = fronts.get(blobs, search.front_sha256)
    try:
        point = front.query(
            data.objective,
            data.cost_budget,
            max_drop=data.max_drop,
            worst_budget=data.cost_worst_budget,
        )
    except NoFeasibleConfiguration as exc:
        raise Unprocessable(
            str(exc), alternatives=[p.to_json() for p in exc.alternatives if p is not None]
        ) from None
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    metrics = {
        "miou": point.miou,
        "expected_cost": point.expected_cost,
        "worst_cost": point.worst_cost,
        "p90_cost": point.p90_cost,
        "exit_fractions": list(point.exit_fractions),
        "unit": search.unit,
        "profile_id": search.profile_id,
        "reference_miou": front.reference_miou,
    }
    config = get_or_create(session, search.supernet_id, point.configuration.to_json(), metrics)
    return SearchAnswer(
        search_id=search.id,
        configuration_id=config.id,
        objective=data.objective,
        configuration=point.configuration.to_json(),
        miou=point.miou,
        expected_cost=point.expected_cost,
        worst_cost=point.worst_cost,
        p90_cost=point.p90_cost,
        exit_fractions=list(point.exit_fractions),
        reference_miou=front.reference_miou,
        configs_evaluated=front.configs_evaluated,
        seconds=float(search.seconds or front.seconds),
        unit=search.unit,
        device=data.device,
        profile_id=search.profile_id,
        front=[p.to_json() for p in front.front_2d()],
    )


def get_search(session: Session, search_id: int) -> Search:
    search = repository.get(session, search_id)
    if search is None:
        raise NotFound(f"no search {search_id}")
    return search


def read(search: Search) -> SearchRead:
    return SearchRead(
        id=search.id,
        supernet_id=search.supernet_id,
        profile_id=search.profile_id,
        unit=search.unit,
        options=search.options,
        status=search.status,
        error=search.error,
        reference_miou=search.reference_miou,
        configs_evaluated=search.configs_evaluated,
        seconds=search.seconds,
    )
