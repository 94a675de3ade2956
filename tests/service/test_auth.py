"""Tokens: bearer auth, roles, creation shown once, revocation, expiry, the first admin."""

from __future__ import annotations

import datetime as dt
import hashlib
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from service.app import create_app
from service.auth import service as auth_service
from service.auth.models import Token
from service.auth.service import Principal, PrincipalCache
from service.settings import Settings
from tests.service.conftest import ADMIN, auth


def test_missing_token_is_401(client: TestClient) -> None:
    r = client.get("/v1/supernets")
    assert r.status_code == 401
    assert "missing bearer token" in r.json()["detail"]


def test_unknown_token_is_401(client: TestClient) -> None:
    r = client.get("/v1/supernets", headers=auth("mess_not-a-real-token"))
    assert r.status_code == 401
    assert r.json() == {"detail": "unknown token"}


def test_wrong_role_is_403(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post(
        "/v1/tokens", json={"name": "x", "role": "agent"}, headers=auth(tokens["engineer"])
    )
    assert r.status_code == 403
    assert "admin role" in r.json()["detail"]


def test_created_token_works_and_only_its_hash_is_stored(
    client: TestClient, settings: Settings
) -> None:
    r = client.post("/v1/tokens", json={"name": "ci", "role": "engineer"}, headers=auth(ADMIN))
    assert r.status_code == 201
    secret = r.json()["token"]
    assert client.get("/v1/supernets", headers=auth(secret)).status_code == 200
    listed = client.get("/v1/tokens", headers=auth(ADMIN)).json()["items"]
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    engine = create_engine(settings.db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(Token.token_hash)).scalars().all()
    engine.dispose()
    assert stored == [hashlib.sha256(secret.encode()).hexdigest()]


def test_revoked_token_is_401(client: TestClient, tokens: dict[str, str]) -> None:
    listed = client.get("/v1/tokens", headers=auth(ADMIN)).json()["items"]
    agent_id = next(t["id"] for t in listed if t["role"] == "agent")
    r = client.delete(f"/v1/tokens/{agent_id}", headers=auth(ADMIN))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = client.get("/v1/devices", headers=auth(tokens["agent"]))
    assert r.status_code == 401
    assert "revoked or expired" in r.json()["detail"]


def test_expired_token_is_401(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Expiry holds to the second, though the principal cache saw the token while valid and
    would keep it far longer."""
    now = [0.0]
    client.app.state.principals = PrincipalCache(ttl=600, clock=lambda: now[0])  # type: ignore[attr-defined]
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    r = client.post(
        "/v1/tokens",
        json={"name": "short", "role": "agent", "expires_at": expires.isoformat()},
        headers=auth(ADMIN),
    )
    secret = r.json()["token"]
    assert client.get("/v1/devices", headers=auth(secret)).status_code == 200  # now cached
    now[0] = 50.0
    assert client.get("/v1/devices", headers=auth(secret)).status_code == 200
    # 61 s on: past the expiry, for the cache's clock and for the database check
    now[0] = 61.0
    later = expires + dt.timedelta(seconds=1)
    monkeypatch.setattr(auth_service, "utcnow", lambda: later)
    r = client.get("/v1/devices", headers=auth(secret))
    assert r.status_code == 401 and "revoked or expired" in r.json()["detail"]


def test_token_changes_behind_the_server_show_within_the_cache_ttl(
    client: TestClient, settings: Settings
) -> None:
    """MESS_AUTH_CACHE_SECONDS bounds how long a process trusts a token it has seen (another
    process may have revoked it)."""
    now = [0.0]
    ttl = settings.auth_cache_seconds
    client.app.state.principals = PrincipalCache(ttl, clock=lambda: now[0])  # type: ignore[attr-defined]
    r = client.post("/v1/tokens", json={"name": "n", "role": "agent"}, headers=auth(ADMIN))
    secret = r.json()["token"]
    assert client.get("/v1/devices", headers=auth(secret)).status_code == 200
    engine = create_engine(settings.db_url)
    with engine.begin() as conn:  # as another worker process would
        conn.execute(Token.__table__.update().values(revoked_at=dt.datetime.now(dt.UTC)))
    engine.dispose()
    now[0] = ttl - 0.1
    assert client.get("/v1/devices", headers=auth(secret)).status_code == 200  # cached
    now[0] = ttl + 0.1
    assert client.get("/v1/devices", headers=auth(secret)).status_code == 401


def test_the_principal_cache_keeps_an_entry_no_longer_than_the_ttl_or_the_expiry() -> None:
    now = [100.0]
    cache = PrincipalCache(ttl=10.0, clock=lambda: now[0])
    expiring = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    cache.put("a", Principal(1, "a", "agent"))
    cache.put("b", Principal(2, "b", "agent", expiring))
    now[0] = 104.0
    assert cache.get("a") is not None and cache.get("b") is not None
    now[0] = 106.0
    assert cache.get("a") is not None and cache.get("b") is None
    now[0] = 110.5
    assert cache.get("a") is None
    assert PrincipalCache(ttl=0, clock=lambda: now[0]).get("a") is None


def test_expiry_in_the_past_is_422(client: TestClient) -> None:
    r = client.post(
        "/v1/tokens",
        json={"name": "old", "role": "agent", "expires_at": "2001-01-01T00:00:00Z"},
        headers=auth(ADMIN),
    )
    assert r.status_code == 422 and "past" in r.json()["detail"]


def test_invalid_role_is_422(client: TestClient) -> None:
    r = client.post("/v1/tokens", json={"name": "x", "role": "root"}, headers=auth(ADMIN))
    assert r.status_code == 422
    assert "body.role" in r.json()["detail"]


def test_without_admin_token_the_first_start_writes_one_to_a_private_file(
    db_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url)
    with TestClient(create_app(settings)) as c:
        path = settings.data_dir / "admin-token"
        secret = path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        r = c.post("/v1/tokens", json={"name": "e", "role": "engineer"}, headers=auth(secret))
        assert r.status_code == 201
    path.unlink()
    with TestClient(create_app(settings)) as c:  # an admin exists: no new token, no file
        assert not path.exists()
        assert c.get("/v1/tokens", headers=auth(secret)).status_code == 200


def test_an_empty_admin_token_setting_counts_as_unset() -> None:
    assert Settings(admin_token="  ").admin_token is None
