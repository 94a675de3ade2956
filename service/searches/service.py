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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from mess.search import NoFeasibleConfiguration, ParetoFront
from service.auth.service import Principal
from service.blobs import BlobStore
from service.configurations.service import config_id, get_or_create
from service.devices.service import get_device
from service.errors import NotFound, Unprocessable
from service.searches import repository
from service.searches.models import DONE, FAILED, Search
from service.searches.schemas import SearchAnswer, SearchRead, SearchRequest
from service.supernets.service import get_supernet
from service.verifications import service as verifications

GFLOPS = "gflops"


def search_key(supernet_id: str, profile_id: int | None, options: dict[str, Any]) -> str:
    body = {"supernet": supernet_id, "profile": profile_id or GFLOPS, "options": options}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def priced(options: dict[str, Any], correction: dict[str, Any] | None) -> dict[str, Any]:
    """A search's options with the profile's cost correction, when it has one: a new
    correction version makes a new key, so a new front (docs/DESIGN.md, "Service")."""
    return options if correction is None else {**options, "correction": correction}


def request_search(session: Session, data: SearchRequest, principal: Principal) -> Search:
    """The search answering ``data``: existing (any status) or newly queued."""
    principal.require("engineer")
    supernet = get_supernet(session, data.supernet_id)
    profile_id, unit, correction = None, GFLOPS, None
    if data.device != GFLOPS:
        device = get_device(session, data.device)
        profile = repository.latest_profile(session, supernet.id, device.id)
        if profile is None:
            raise NotFound(
                f"no profile of supernet {supernet.id[:12]} on device {data.device!r} yet: "
                "run mess-agent on that device (GET /v1/jobs shows its queue)"
            )
        profile_id, unit = profile.id, profile.unit
        correction = verifications.search_option(
            verifications.current_correction(session, profile.id)
        )
    options = priced(data.options(), correction)
    key = search_key(supernet.id, profile_id, options)
    search = repository.by_key(session, key)
    if search is not None:
        return search  # the common case, read-only
    return repository.get_or_create(
        session,
        {
            "key": key,
            "supernet_id": supernet.id,
            "profile_id": profile_id,
            "unit": unit,
            "options": options,
        },
    )


def latest_resolution(
    session: Session, supernet_id: str, device: str
) -> tuple[int | None, dict[str, Any] | None]:
    """The profile ``request_search`` would resolve now (None: none, or no such device) and
    its cost correction."""
    profile_id = repository.latest_profile_id(session, supernet_id, device)
    return profile_id, verifications.search_option(
        verifications.current_correction(session, profile_id)
    )


@dataclass(frozen=True)
class LoadedFront:
    """A stored front in memory, with the 2-D front every answer carries, serialized once."""

    front: ParetoFront
    front_2d: list[dict[str, Any]]

    @classmethod
    def of(cls, front: ParetoFront) -> LoadedFront:
        return cls(front, [p.to_json() for p in front.front_2d()])


class FrontCache:
    """Fronts by blob sha256, most recently used kept (they are immutable)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.items: OrderedDict[str, LoadedFront] = OrderedDict()
        self.lock = threading.Lock()

    def peek(self, sha: str) -> LoadedFront | None:
        """The front if it is in memory (never reads the blob store)."""
        with self.lock:
            return self.items.get(sha)

    def get(self, blobs: BlobStore, sha: str) -> LoadedFront:
        with self.lock:
            if sha in self.items:
                self.items.move_to_end(sha)
                return self.items[sha]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "front.npz"
            path.write_bytes(b"".join(blobs.iter_chunks(sha)))
            loaded = LoadedFront.of(ParetoFront.load(path))
        with self.lock:
            self.items[sha] = loaded
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return loaded


@dataclass(frozen=True)
class DoneSearch:
    """What answering needs of a finished search (immutable once done: safe to cache)."""

    id: int
    key: str
    supernet_id: str
    profile_id: int | None
    unit: str
    front_sha256: str
    seconds: float | None
    correction: dict[str, Any] | None = None  # the cost correction the front priced with

    @classmethod
    def of(cls, search: Search) -> DoneSearch:
        if search.status == FAILED:
            raise Unprocessable(f"the search failed: {search.error}")
        assert search.status == DONE and search.front_sha256 is not None
        return cls(
            search.id,
            search.key,
            search.supernet_id,
            search.profile_id,
            search.unit,
            search.front_sha256,
            search.seconds,
            (search.options or {}).get("correction"),
        )


def compose(
    loaded: LoadedFront, done: DoneSearch, data: SearchRequest
) -> tuple[SearchAnswer, dict[str, Any]]:
    """Answer ``data`` from a front in memory (no database): the answer and the metrics to
    store with its configuration."""
    front = loaded.front
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
    configuration = point.configuration.to_json()
    metrics = {
        "miou": point.miou,
        "expected_cost": point.expected_cost,
        "worst_cost": point.worst_cost,
        "p90_cost": point.p90_cost,
        "exit_fractions": list(point.exit_fractions),
        "unit": done.unit,
        "profile_id": done.profile_id,
        "reference_miou": front.reference_miou,
        "correction": done.correction,
    }
    answer = SearchAnswer(
        search_id=done.id,
        configuration_id=config_id(done.supernet_id, configuration),
        objective=data.objective,
        configuration=configuration,
        miou=point.miou,
        expected_cost=point.expected_cost,
        worst_cost=point.worst_cost,
        p90_cost=point.p90_cost,
        exit_fractions=list(point.exit_fractions),
        reference_miou=front.reference_miou,
        configs_evaluated=front.configs_evaluated,
        seconds=float(done.seconds or front.seconds),
        unit=done.unit,
        device=data.device,
        profile_id=done.profile_id,
        front=loaded.front_2d,
    )
    return answer, metrics


def answer(
    session: Session, blobs: BlobStore, fronts: FrontCache, search: Search, data: SearchRequest
) -> tuple[SearchAnswer, DoneSearch]:
    """Answer ``data`` from the stored front of ``search``; store its configuration."""
    done = DoneSearch.of(search)
    front = fronts.get(blobs, done.front_sha256)
    result, metrics = compose(front, done, data)
    get_or_create(session, done.supernet_id, result.configuration, metrics)
    return result, done


def get_search(session: Session, search_id: int) -> Search:
    search = repository.get(session, search_id)
    if search is None:
        raise NotFound(f"no search {search_id}")
    return search


def read(session: Session, search: Search) -> SearchRead:
    """A search's view, with its shards' progress when it was split."""
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
        shards=search.shards,
        shards_done=None if search.shards is None else repository.shards_done(session, search.id),
    )
