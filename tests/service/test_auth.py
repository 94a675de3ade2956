"""Tokens: bearer auth, roles, creation shown once, revocation, expiry, the first admin."""

from __future__ import annotations

import datetime as dt
import hashlib
import stat
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from service.app import create_app
from service.auth.models import Token
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


def test_expired_token_is_401(client: TestClient) -> None:
    """Expiry holds to the second, though the principal cache saw the token while valid."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    r = client.post(
        "/v1/tokens",
        json={"name": "short", "role": "agent", "expires_at": expires.isoformat()},
        headers=auth(ADMIN),
    )
    secret = r.json()["token"]
    assert client.get("/v1/devices", headers=auth(secret)).status_code == 200  # now cached
    time.sleep(max((expires - dt.datetime.now(dt.UTC)).total_seconds(), 0) + 0.1)
    r = client.get("/v1/devices", headers=auth(secret))
    assert r.status_code == 401 and "revoked or expired" in r.json()["detail"]


def test_token_changes_behind_the_server_show_within_the_cache_ttl(
    client: TestClient, settings: Settings
) -> None:
    """MESS_AUTH_CACHE_SECONDS bounds how long a process trusts a token it has seen (another
    process may have revoked it)."""
    r = client.post("/v1/tokens", json={"name": "n", "role": "agent"}, headers=auth(ADMIN))
    secret = r.json()["token"]
    assert client.get("/v1/devices", headers=auth(secret)).status_code == 200
    engine = create_engine(settings.db_url)
    with engine.begin() as conn:  # as another worker process would
        conn.execute(Token.__table__.update().values(revoked_at=dt.datetime.now(dt.UTC)))
    engine.dispose()
    assert client.get("/v1/devices", headers=auth(secret)).status_code == 200  # cached
    time.sleep(settings.auth_cache_seconds + 0.1)
    assert client.get("/v1/devices", headers=auth(secret)).status_code == 401


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
