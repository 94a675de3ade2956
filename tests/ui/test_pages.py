"""The dashboard's routes over the test client: sessions, CSRF, roles and each page's HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest
from fastapi.testclient import TestClient

from service.ui.session import COOKIE
from tests.service.conftest import ADMIN, auth
from tests.service.factories import costs_table
from tests.ui.seed import EVIL, Seeded, seed
from tests.waiting import wait_until

CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def login(client: TestClient, token: str) -> TestClient:
    form = client.get("/ui/login")
    csrf = CSRF.search(form.text)
    assert csrf is not None, form.text
    r = client.post(
        "/ui/login", data={"token": token, "csrf_token": csrf[1]}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/", r.text
    return client


def page_csrf(client: TestClient, path: str) -> str:
    found = CSRF.search(client.get(path).text)
    assert found is not None
    return found[1]


@pytest.fixture
def seeded(client: TestClient, tmp_path: Path) -> Seeded:
    return seed(client, ADMIN, tmp_path)


def test_pages_without_a_session_redirect_to_the_login_form(client: TestClient) -> None:
    for path in ("/ui/", "/ui/fragments/live", "/ui/tokens", "/ui/supernets/x", "/ui/devices/d"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login", path
    forged = client.get(
        "/ui/", headers={"Cookie": f"{COOKIE}=forged.value"}, follow_redirects=False
    )
    assert forged.status_code == 303
    form = client.get("/ui/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    assert "default-src 'self'" in form.headers["content-security-policy"]


def test_login_keeps_a_reference_to_the_token_not_the_token(client: TestClient) -> None:
    r = client.post("/v1/tokens", json={"name": "e", "role": "engineer"}, headers=auth(ADMIN))
    token = r.json()["token"]
    form = client.get("/ui/login")
    csrf = CSRF.search(form.text)
    assert csrf is not None
    r = client.post(
        "/ui/login", data={"token": token, "csrf_token": csrf[1]}, follow_redirects=False
    )
    assert r.status_code == 303
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    attributes = cookie.lower()
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/ui" in attributes
    assert "max-age=86400" in attributes and "secure" not in attributes  # plain http here
    assert token not in cookie and token not in r.headers.get("location", "")
    overview = client.get("/ui/")
    assert overview.status_code == 200 and token not in overview.text
    assert "e (engineer)" in overview.text


def test_login_refuses_unknown_and_agent_tokens_and_a_missing_csrf_token(
    client: TestClient,
) -> None:
    r = client.post("/v1/tokens", json={"name": "a", "role": "agent"}, headers=auth(ADMIN))
    agent = r.json()["token"]
    csrf = page_csrf(client, "/ui/login")
    bad = client.post("/ui/login", data={"token": "mess_nope", "csrf_token": csrf})
    assert bad.status_code == 401 and "unknown token" in bad.text
    assert "mess_nope" not in bad.text  # a token never appears in a page
    refused = client.post("/ui/login", data={"token": agent, "csrf_token": csrf})
    assert refused.status_code == 403 and "Agent tokens have no dashboard" in refused.text
    assert client.post("/ui/login", data={"token": ADMIN}).status_code == 403
    wrong = client.post("/ui/login", data={"token": ADMIN, "csrf_token": "x" * 32})
    assert wrong.status_code == 403
    assert COOKIE not in client.cookies


def test_logout_and_revocation_end_the_session(client: TestClient) -> None:
    r = client.post("/v1/tokens", json={"name": "e", "role": "engineer"}, headers=auth(ADMIN))
    created = r.json()
    login(client, created["token"])
    csrf = page_csrf(client, "/ui/")
    assert client.post("/ui/logout", data={}, follow_redirects=False).status_code == 403
    out = client.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert client.get("/ui/", follow_redirects=False).status_code == 303
    login(client, created["token"])
    assert client.get("/ui/", follow_redirects=False).status_code == 200
    client.delete(f"/v1/tokens/{created['id']}", headers=auth(ADMIN))
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_every_page_shows_the_seeded_service(client: TestClient, seeded: Seeded) -> None:
    login(client, seeded.engineer)
    overview = client.get("/ui/")
    assert overview.status_code == 200
    for text in ("tiny", "test:tiny", "16x16", "pi-5", "jetson", "onnxruntime 1.20.1", "queued"):
        assert text in overview.text, text
    assert EVIL not in overview.text and "&lt;script&gt;alert(" in overview.text
    live = client.get("/ui/fragments/live")
    assert live.status_code == 200 and "pi-5" in live.text and "<html" not in live.text

    page = client.get(f"/ui/supernets/{seeded.supernet_id}")
    assert page.status_code == 200
    found = re.search(r'<script type="application/json" id="plot-data">(.*?)</script>', page.text)
    assert found is not None
    plot = json.loads(found[1])
    counts = {s["device"]: len(s["points"]) for s in plot["series"]}
    assert counts == {d: len(a["front"]) for d, a in seeded.answers.items()}
    assert all(s["original"] is not None for s in plot["series"])
    evil = client.get(f"/ui/supernets/{seeded.evil_supernet_id}")
    assert evil.status_code == 200 and EVIL not in evil.text

    front = seeded.answers["pi-5"]["front"]
    budget = (front[0]["expected_cost"] + front[-1]["expected_cost"]) / 2
    answer = client.post(
        "/v1/search",
        json={
            "supernet_id": seeded.supernet_id,
            "device": "pi-5",
            "objective": "max-accuracy",
            "budget_ms": budget,
        },
        headers=auth(seeded.engineer),
    ).json()
    picked = client.get(
        f"/ui/supernets/{seeded.supernet_id}/pick",
        params={"device": "pi-5", "budget_ms": budget},
        follow_redirects=False,
    )
    assert picked.status_code == 303
    assert picked.headers["location"] == f"/ui/configurations/{answer['configuration_id']}"
    config = client.get(picked.headers["location"])
    assert config.status_code == 200
    assert f"{answer['miou']:.4f}" in config.text and 'id="verifications"' in config.text
    model = client.get(f"{picked.headers['location']}/model.onnx")
    assert model.status_code == 200
    onnx.checker.check_model(onnx.load_from_string(model.content))
    too_small = client.get(
        f"/ui/supernets/{seeded.supernet_id}/pick", params={"device": "pi-5", "budget_ms": 1e-9}
    )
    assert too_small.status_code == 422 and "<h1>422</h1>" in too_small.text

    device = client.get("/ui/devices/pi-5")
    assert device.status_code == 200
    for text in ('id="parts"', "segment/layer1", "head/final", 'id="wholes"', "done", "v1"):
        assert text in device.text, text
    # the agent's per-part report summed up, not printed part by part
    assert "timed within the target" in device.text and "device drift" in device.text
    assert "halfwidth_pct" not in device.text
    assert client.get("/ui/devices/nope").status_code == 404
    assert client.get("/ui/configurations/" + "0" * 64).status_code == 404


def test_tokens_are_managed_by_admins_with_csrf(client: TestClient) -> None:
    r = client.post("/v1/tokens", json={"name": "e", "role": "engineer"}, headers=auth(ADMIN))
    engineer = r.json()["token"]
    login(client, engineer)
    assert client.get("/ui/tokens").status_code == 403
    client.cookies.clear()
    login(client, ADMIN)
    csrf = page_csrf(client, "/ui/tokens")
    body = {"name": "lab <b>", "role": "agent", "expires_days": "2", "csrf_token": csrf}
    assert client.post("/ui/tokens", data={**body, "csrf_token": ""}).status_code == 403
    foreign = client.post("/ui/tokens", data=body, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    created = client.post("/ui/tokens", data=body)
    assert created.status_code == 201 and "lab &lt;b&gt;" in created.text
    secret = re.search(r'id="new-token" class="secret">([^<]+)<', created.text)
    assert secret is not None
    listed = client.get("/ui/tokens")
    assert secret[1] not in listed.text  # shown once
    rows = client.get("/v1/tokens", headers=auth(ADMIN)).json()["items"]
    new = next(t for t in rows if t["name"] == "lab <b>")
    assert new["role"] == "agent" and new["expires_at"] is not None
    invalid = client.post("/ui/tokens", data={**body, "role": "root"})
    assert invalid.status_code == 422
    revoke = f"/ui/tokens/{new['id']}/revoke"
    assert client.post(revoke, data={}).status_code == 403
    done = client.post(revoke, data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert client.get("/v1/devices", headers=auth(secret[1])).status_code == 401


def test_a_stored_verification_is_shown_on_its_configuration(
    client: TestClient, seeded: Seeded
) -> None:
    from sqlalchemy import select

    from service.db import transaction
    from service.devices.models import Device
    from service.profiles.models import Profile
    from service.verifications.models import Verification

    answer = seeded.answers["jetson"]
    config_id = answer["configuration_id"]
    with transaction(client.app.state.sessionmaker) as session:  # type: ignore[attr-defined]
        device = session.scalars(select(Device).where(Device.name == "jetson")).one()
        profile = session.scalars(select(Profile).where(Profile.device_id == device.id)).first()
        assert profile is not None
        session.add(
            Verification(
                configuration_id=config_id,
                device_id=device.id,
                profile_id=profile.id,
                lease_id="test",
                paths_ms=[12.5],
                predicted_paths_ms=[10.0],
                exit_fractions=[1.0],
                expected_ms=12.5,
                worst_ms=12.5,
                p90_ms=12.5,
                predicted_expected_ms=10.0,
                context={},
            )
        )
    login(client, seeded.engineer)
    page = client.get(f"/ui/configurations/{config_id}")
    assert page.status_code == 200
    section = page.text[page.text.index('id="verifications"') :]
    assert "<th>expected_ms</th>" in section and "<td>12.5</td>" in section


def test_a_missing_front_is_computed_from_the_page(client: TestClient, seeded: Seeded) -> None:
    sid = seeded.evil_supernet_id
    body = {"supernet_id": sid, "device": "jetson", "costs": costs_table("ms", scale=2.0)}
    r = client.post("/v1/profiles", json=body, headers=auth(seeded.agent))
    assert r.status_code == 201, r.text
    login(client, seeded.engineer)
    page = client.get(f"/ui/supernets/{sid}")
    assert "Compute the front" in page.text and "not searched" in page.text
    found = CSRF.search(page.text[page.text.index('class="compute"') :])
    assert found is not None
    form = {"device": "jetson", "csrf_token": found[1]}
    assert client.post(f"/ui/supernets/{sid}/fronts", data={"device": "jetson"}).status_code == 403
    queued = client.post(f"/ui/supernets/{sid}/fronts", data=form, follow_redirects=False)
    assert queued.status_code == 303 and queued.headers["location"] == f"/ui/supernets/{sid}"

    def points() -> int:
        text = client.get(f"/ui/supernets/{sid}").text
        found = re.search(r'id="plot-data">(.*?)</script>', text)
        assert found is not None
        return len(json.loads(found[1])["series"][0]["points"])

    wait_until(lambda: points() > 0, timeout=60, message="the front was not computed")
    answer = client.post(
        "/v1/search",
        json={"supernet_id": sid, "device": "jetson", "objective": "pareto"},
        headers=auth(seeded.engineer),
    ).json()
    assert points() == len(answer["front"])


def test_a_profile_context_is_shown_as_short_facts() -> None:
    from service.ui.pages import context_facts

    context = {
        "runtime": "onnxruntime",
        "intra_op_threads": 1,
        "providers": ["CPUExecutionProvider"],
        "note": "x" * 500,
        "rule": {"target": 0.02},
        "precision": {"a": {"halfwidth_pct": 1.5, "runs": 16}, "b": {"halfwidth_pct": 2.5}},
        "signatures": {"s": ["a"], "t": ["b"]},
        "speed": {"medians_ms": [1.0, 1.05], "spread_pct": 5.0},
        "p90_ms": {"a": 2.0},
    }
    facts = dict(context_facts(context))
    assert facts["runtime"] == "onnxruntime" and facts["intra_op_threads"] == "1"
    assert facts["providers"] == "CPUExecutionProvider"
    assert facts["rule"] == '{"target":0.02}'
    assert len(facts["note"]) == 120 and facts["note"].endswith("\u2026")
    assert (
        facts["precision"] == "1 of 2 timed within the target; median \u00b12 %, worst \u00b12.5 %"
    )
    assert facts["device drift"] == "5 % over 2 probes"
    assert "p90_ms" not in facts and "signatures" not in facts
    assert context_facts(None) == [] and context_facts({"precision": "?"}) == []
