"""The dashboard's session cookie: its signing key and its lifetime."""

from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.settings import Settings
from service.ui.session import COOKIE, SECRET_FILE, load_secret
from tests.service.conftest import ADMIN, auth
from tests.ui.test_pages import login


def test_the_signing_key_is_made_once_per_data_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = load_secret(settings)
    assert len(key) >= 40 and load_secret(settings) == key
    mode = (tmp_path / "data" / SECRET_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert [p.name for p in (tmp_path / "data").iterdir()] == [SECRET_FILE]  # no leftovers
    assert load_secret(Settings(data_dir=tmp_path / "data", ui_secret="given")) == "given"


def test_a_session_ends_with_its_token(client: TestClient) -> None:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    body = {"name": "short", "role": "engineer", "expires_at": expires}
    token = client.post("/v1/tokens", json=body, headers=auth(ADMIN)).json()["token"]
    form = client.get("/ui/login")
    csrf = re.search(r'name="csrf_token" value="([^"]*)"', form.text)
    assert csrf is not None
    r = client.post(
        "/ui/login", data={"token": token, "csrf_token": csrf[1]}, follow_redirects=False
    )
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    max_age = re.search(r"Max-Age=(\d+)", cookie, re.IGNORECASE)
    assert max_age is not None and 3500 < int(max_age[1]) <= 3600


def test_a_new_admin_token_ends_the_sessions_of_the_old_one(
    client: TestClient, settings: Settings
) -> None:
    login(client, ADMIN)
    assert client.get("/ui/", follow_redirects=False).status_code == 200
    state = client.app.state  # type: ignore[attr-defined]
    state.settings = settings.model_copy(update={"admin_token": SecretStr("another-admin-0123")})
    assert client.get("/ui/", follow_redirects=False).status_code == 303
