"""Rate limits: a token bucket per working token, per client IP otherwise; 429 + Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.ratelimit import RateLimitMiddleware, TokenBuckets
from service.settings import Settings
from tests.service.conftest import ADMIN, auth

# the app tests need no second backend: the limiter never touches the database
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=3, clock=clock)  # one request per second
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0.0  # buckets are per key
    clock.now += 0.5
    assert buckets.take("a") == pytest.approx(0.5)  # half a request refilled
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    clock.now += 3600  # a long pause refills to the burst, not beyond
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_buckets_are_bounded_in_number() -> None:
    buckets = TokenBuckets(per_minute=60, burst=1, max_keys=100, clock=Clock())
    for i in range(1000):
        buckets.take(f"ip:{i}")
    assert len(buckets) == 100


def test_a_refused_request_never_reaches_the_app_nor_its_body() -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append("app")

    async def receive() -> dict[str, Any]:
        calls.append("receive")
        return {"type": "http.request", "body": b"x" * 100, "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    limiter = RateLimitMiddleware(app, per_minute=1, burst=1, clock=Clock())
    scope = {"type": "http", "path": "/v1/supernets", "headers": [], "client": ("10.0.0.1", 1)}
    asyncio.run(limiter(scope, receive, send))
    asyncio.run(limiter(scope, receive, send))
    assert calls == ["app"]  # the second: neither the app nor receive() was called
    start, body = sent
    assert start["status"] == 429
    assert dict(start["headers"])[b"retry-after"] == b"60"
    assert b'"detail": "rate limit exceeded' in body["body"]


@pytest.fixture
def limited(settings: Settings) -> Iterator[TestClient]:
    """The app with 3 requests of burst and 1 per minute after that."""
    strict = settings.model_copy(update={"rate_limit_per_minute": 1, "rate_limit_burst": 3})
    with TestClient(create_app(strict)) as client:
        yield client


def _engineer(client: TestClient) -> str:
    r = client.post("/v1/tokens", json={"name": "e", "role": "engineer"}, headers=auth(ADMIN))
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


@SQLITE_ONLY
def test_a_token_past_its_burst_gets_429_with_retry_after(limited: TestClient) -> None:
    # the admin's first request goes to the client address's bucket, then to its own
    engineer = _engineer(limited)
    h = auth(engineer)
    # its first request is paid by the address (it has not worked yet), then 3 of its own
    assert [limited.get("/v1/supernets", headers=h).status_code for _ in range(4)] == [200] * 4
    r = limited.get("/v1/supernets", headers=h)
    assert r.status_code == 429
    assert "rate limit exceeded" in r.json()["detail"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # other tokens and the health check are not affected
    assert limited.get("/v1/tokens", headers=auth(ADMIN)).status_code == 200
    assert limited.get("/healthz").status_code == 200


@SQLITE_ONLY
def test_made_up_tokens_share_the_client_address_bucket(limited: TestClient) -> None:
    engineer = _engineer(limited)  # the admin's request: one from the address's 3
    assert limited.get("/v1/devices", headers=auth(engineer)).status_code == 200  # a second
    statuses = [
        limited.get("/v1/devices", headers=auth(f"mess_forged-{i}")).status_code for i in range(4)
    ]
    assert statuses == [401, 429, 429, 429]  # a fresh token per request gains nothing
    assert limited.get("/v1/devices").status_code == 429  # nor does no token at all
    # a token that works keeps its own bucket while its address is throttled
    assert limited.get("/v1/devices", headers=auth(engineer)).status_code == 200


@SQLITE_ONLY
def test_a_revoked_token_falls_back_to_the_address_bucket(limited: TestClient) -> None:
    engineer = _engineer(limited)
    h = auth(engineer)
    assert limited.get("/v1/devices", headers=h).status_code == 200
    token_id = limited.get("/v1/tokens", headers=auth(ADMIN)).json()["items"][0]["id"]
    assert limited.delete(f"/v1/tokens/{token_id}", headers=auth(ADMIN)).status_code == 200
    assert limited.get("/v1/devices", headers=h).status_code == 401  # paid by its own bucket
    # from now on it pays with the address's bucket: its last request, then 429
    statuses = [limited.get("/v1/devices", headers=h).status_code for _ in range(3)]
    assert statuses == [401, 429, 429]


@SQLITE_ONLY
def test_zero_disables_the_limit(settings: Settings) -> None:
    off = settings.model_copy(update={"rate_limit_per_minute": 0, "rate_limit_burst": 1})
    with TestClient(create_app(off)) as client:
        statuses = {
            client.get("/v1/devices", headers=auth("mess_x")).status_code for _ in range(50)
        }
    assert statuses == {401}


def test_the_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESS_RATE_LIMIT_PER_MINUTE", "120")
    monkeypatch.setenv("MESS_RATE_LIMIT_BURST", "0")
    s = Settings()
    assert (s.rate_limit_per_minute, s.rate_limit_burst) == (120, 0)
    assert Settings.model_fields["rate_limit_per_minute"].default == 6000
    monkeypatch.setenv("MESS_RATE_LIMIT_PER_MINUTE", "-1")
    with pytest.raises(ValueError, match="rate_limit_per_minute"):
        Settings()
