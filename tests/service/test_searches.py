"""Searches over HTTP: exact answers (checked against the library), fronts reused, 4xx."""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mess.costs import parse_costs
from mess.search import NoFeasibleConfiguration, search
from mess.stats import load_stats
from service.searches.schemas import SearchRequest
from tests.service.conftest import auth
from tests.service.factories import costs_table
from tests.waiting import wait_until


@pytest.fixture
def setup(
    client: TestClient, tokens: dict[str, str], bundle_file: Path, tmp_path: Path
) -> dict[str, Any]:
    files = {"bundle": ("b.mess", bundle_file.read_bytes(), "application/zip")}
    sid = client.post("/v1/supernets", files=files, headers=auth(tokens["engineer"])).json()["id"]
    h = auth(tokens["agent"])
    assert client.post("/v1/devices", json={"name": "dev"}, headers=h).status_code == 201
    costs = costs_table("ms", scale=2.0)
    r = client.post(
        "/v1/profiles", json={"supernet_id": sid, "device": "dev", "costs": costs}, headers=h
    )
    assert r.status_code == 201, r.text
    with zipfile.ZipFile(bundle_file) as zf:
        (tmp_path / "stats.npz").write_bytes(zf.read("stats.npz"))
        gflops = json.loads(zf.read("costs.json"))
    return {
        "sid": sid,
        "h": auth(tokens["engineer"]),
        "agent": auth(tokens["agent"]),
        "stats": load_stats(tmp_path / "stats.npz"),
        "costs": costs,
        "gflops": gflops,
    }


def _post(client: TestClient, s: dict[str, Any], **body: Any) -> Any:
    return client.post("/v1/search", json={"supernet_id": s["sid"], **body}, headers=s["h"])


def test_max_accuracy_answer_equals_the_library_search(client: TestClient, setup: dict) -> None:
    ref = search(setup["stats"], parse_costs(setup["costs"]), objective="pareto")
    budget = (ref.front[0].expected_cost + ref.front[-1].expected_cost) / 2
    r = _post(client, setup, device="dev", objective="max-accuracy", budget_ms=budget)
    assert r.status_code == 200, r.text
    answer = r.json()
    expected = search(
        setup["stats"], parse_costs(setup["costs"]), objective="max-accuracy", budget=budget
    )
    assert answer["configuration"] == expected.configuration.to_json()
    assert answer["miou"] == pytest.approx(expected.miou)
    assert answer["expected_cost"] == pytest.approx(expected.expected_cost)
    assert answer["unit"] == "ms" and answer["front"]
    got = client.get(f"/v1/configurations/{answer['configuration_id']}", headers=setup["h"])
    assert got.json()["configuration"] == answer["configuration"]


def test_repeated_queries_are_answered_from_the_stored_front(
    client: TestClient, setup: dict
) -> None:
    first = _post(client, setup, device="dev", objective="pareto").json()
    for budget in (1.0, 5.0, 50.0):
        r = _post(client, setup, device="dev", objective="max-accuracy", budget_ms=budget)
        assert r.status_code in (200, 422)
        if r.status_code == 200:
            assert r.json()["search_id"] == first["search_id"]
    status = client.get(f"/v1/searches/{first['search_id']}", headers=setup["h"]).json()
    assert status["status"] == "done" and status["configs_evaluated"] > 0


def test_min_cost_and_gflops_tables(client: TestClient, setup: dict) -> None:
    r = _post(client, setup, device="gflops", objective="min-cost", max_drop=0.01)
    assert r.status_code == 200, r.text
    expected = search(
        setup["stats"], parse_costs(setup["gflops"]), objective="min-cost", max_drop=0.01
    )
    assert r.json()["expected_cost"] == pytest.approx(expected.expected_cost)
    assert r.json()["unit"] == "gflops"


def test_no_feasible_configuration_names_alternatives(client: TestClient, setup: dict) -> None:
    with pytest.raises(NoFeasibleConfiguration):
        search(setup["stats"], parse_costs(setup["costs"]), objective="max-accuracy", budget=1e-6)
    r = _post(client, setup, device="dev", objective="max-accuracy", budget_ms=1e-6)
    assert r.status_code == 422
    assert r.json()["alternatives"] and r.json()["detail"]


@pytest.mark.parametrize(
    "body,status",
    [
        ({"device": "ghost", "objective": "pareto"}, 404),
        ({"device": "dev", "objective": "max-accuracy"}, 422),
        ({"device": "dev", "objective": "max-accuracy", "budget_ms": -1}, 422),
        ({"device": "dev", "objective": "min-cost", "max_drop": 5}, 422),
        ({"device": "dev", "objective": "pareto", "image_thresholds": [0.5, 0.1]}, 422),
        ({"device": "../etc", "objective": "pareto"}, 422),
    ],
)
def test_bad_search_requests_are_4xx(
    client: TestClient, setup: dict, body: dict, status: int
) -> None:
    assert _post(client, setup, **body).status_code == status


def test_nan_budgets_are_refused(client: TestClient, setup: dict) -> None:
    raw = '{"supernet_id": "%s", "device": "dev", "objective": "max-accuracy", "budget_ms": NaN}'
    r = client.post(
        "/v1/search",
        content=raw % setup["sid"],
        headers={**setup["h"], "Content-Type": "application/json"},
    )
    assert r.status_code == 422


def test_a_device_without_profile_is_a_clear_404(
    client: TestClient, setup: dict, tokens: dict[str, str]
) -> None:
    client.post("/v1/devices", json={"name": "fresh"}, headers=auth(tokens["agent"]))
    r = _post(client, setup, device="fresh", objective="pareto")
    assert r.status_code == 404 and "mess-agent" in r.json()["detail"]


def test_agents_cannot_search_and_unknown_configurations_are_404(
    client: TestClient, setup: dict, tokens: dict[str, str]
) -> None:
    r = client.post(
        "/v1/search",
        json={"supernet_id": setup["sid"], "device": "dev", "objective": "pareto"},
        headers=auth(tokens["agent"]),
    )
    assert r.status_code == 403
    assert client.get("/v1/configurations/" + "0" * 64, headers=setup["h"]).status_code == 404
    assert client.get("/v1/configurations/../x", headers=setup["h"]).status_code == 404


def test_a_repeated_query_runs_no_sql_and_a_new_profile_shows_at_once(
    client: TestClient, setup: dict
) -> None:
    """The query cache: the second identical query is answered from memory (no statement
    reaches the database), and a new profile version changes the answer immediately."""
    from sqlalchemy import event

    from service.auth.service import PrincipalCache
    from service.searches.worker import LEASE_THREAD, SEARCH_THREAD

    state = client.app.state  # type: ignore[attr-defined]
    state.principals = PrincipalCache(ttl=600)  # the tests' 1 s would expire mid-test
    engine = state.engine
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The in-process search worker polls for queued searches and renews its leases on
        # its own threads; only what the requests run counts here.
        if not threading.current_thread().name.startswith((f"{SEARCH_THREAD}-", LEASE_THREAD)):
            statements.append(statement)

    body = {"device": "dev", "objective": "max-accuracy", "budget_ms": 1e6}
    first = _post(client, setup, **body)
    assert first.status_code == 200, first.text
    event.listen(engine, "before_cursor_execute", record)
    try:
        again = _post(client, setup, **body)
        assert again.status_code == 200 and again.json() == first.json()
        assert statements == []
        # another budget on the same search: answered from the front in memory
        other = _post(client, setup, device="dev", objective="min-cost", max_drop=1.0)
        assert other.status_code == 200 and other.json()["search_id"] == first.json()["search_id"]
        # at most the first answer of a configuration is stored (no token, profile or
        # search lookups); once stored, that query too runs no SQL
        assert all("configurations" in st for st in statements if st != "BEGIN"), statements
        statements.clear()
        assert _post(client, setup, device="dev", objective="min-cost", max_drop=1.0).json() == (
            other.json()
        )
        assert statements == []
        # a new version of the device's profile (everything twice as slow)
        costs = costs_table("ms", scale=4.0)
        profile = {"supernet_id": setup["sid"], "device": "dev", "costs": costs}
        r = client.post("/v1/profiles", json=profile, headers=setup["agent"])
        assert r.status_code == 201, r.text
        statements.clear()
        newer = _post(client, setup, **body).json()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements  # resolved afresh
    assert newer["profile_id"] == r.json()["id"] != first.json()["profile_id"]
    assert newer["expected_cost"] == pytest.approx(2 * first.json()["expected_cost"])


def test_a_profile_stored_by_another_process_shows_after_the_cache_seconds(
    client: TestClient, settings: Any, setup: dict
) -> None:
    """Past ``MESS_QUERY_CACHE_SECONDS`` the cached resolution is still used while one
    background query checks it; once the check sees a new profile, answers use it."""
    from service.app import create_app
    from service.searches.cache import QueryCache

    now = [0.0]
    state = client.app.state  # type: ignore[attr-defined]
    state.queries = QueryCache(ttl=30.0, clock=lambda: now[0])
    body = {"device": "dev", "objective": "max-accuracy", "budget_ms": 1e6}
    first = _post(client, setup, **body).json()
    costs = costs_table("ms", scale=4.0)
    profile = {"supernet_id": setup["sid"], "device": "dev", "costs": costs}
    with TestClient(create_app(settings)) as other:  # a second API process on the database
        r = other.post("/v1/profiles", json=profile, headers=setup["agent"])
        assert r.status_code == 201, r.text
    assert _post(client, setup, **body).json() == first  # within the cache seconds
    now[0] = 31.0
    # stale: answered at once from memory; the check runs beside it and drops the resolution
    assert _post(client, setup, **body).json() == first
    wait_until(
        lambda: not state.queries.checking,
        timeout=10,
        interval=0.01,
        message="the stale check did not end",
    )
    newer = _post(client, setup, **body).json()
    assert newer["profile_id"] == r.json()["id"] != first["profile_id"]
    assert newer["expected_cost"] == pytest.approx(2 * first["expected_cost"])


def test_the_query_cache_checks_a_stale_resolution_once() -> None:
    from service.searches.cache import QueryCache
    from service.searches.schemas import SearchRequest
    from service.searches.service import DoneSearch, search_key

    now = [0.0]
    cache = QueryCache(ttl=2.0, clock=lambda: now[0])
    body = SearchRequest.model_validate(
        {"supernet_id": "a" * 64, "device": "dev", "objective": "max-accuracy", "budget_ms": 5}
    )
    key = search_key(body.supernet_id, 7, body.options())
    done = DoneSearch(1, key, body.supernet_id, 7, "ms", "f" * 64, 0.1)
    assert cache.search(body) is None
    cache.put(body, done, "c" * 64)
    hit = cache.search(body)
    assert hit is not None and hit.done == done and not hit.stale
    now[0] = 3.0
    first, second = cache.search(body), cache.search(body)
    assert first is not None and first.stale  # this caller checks
    assert second is not None and not second.stale  # a check is under way
    cache.check_failed(body)  # the database was away: the next query checks again
    third = cache.search(body)
    assert third is not None and third.stale
    cache.checked(body, 7)  # unchanged: fresh for another ttl
    now[0] = 4.0
    fourth = cache.search(body)
    assert fourth is not None and not fourth.stale
    now[0] = 6.0
    assert cache.search(body).stale  # type: ignore[union-attr]
    cache.checked(body, 8)  # a newer profile: the database path answers next
    assert cache.search(body) is None


def test_a_stale_query_whose_front_left_memory_still_checks(
    client: TestClient, setup: dict
) -> None:
    """The caller that sees a stale resolution checks it even when the front is no longer in
    memory and the answer takes the database path (else the key stayed "being checked")."""
    from service.searches.cache import QueryCache
    from service.searches.service import FrontCache

    now = [0.0]
    state = client.app.state  # type: ignore[attr-defined]
    state.queries = QueryCache(ttl=30.0, clock=lambda: now[0])
    body = {"device": "dev", "objective": "max-accuracy", "budget_ms": 1e6}
    assert _post(client, setup, **body).status_code == 200
    now[0] = 31.0
    state.fronts = FrontCache()  # evicted
    assert _post(client, setup, **body).status_code == 200
    wait_until(
        lambda: not state.queries.checking,
        timeout=10,
        interval=0.01,
        message="the stale check did not end",
    )
    now[0] = 62.0
    hit = state.queries.search(SearchRequest.model_validate({"supernet_id": setup["sid"], **body}))
    assert hit is not None and hit.stale  # due again, and not stuck
