"""/healthz checks the database; /metrics counts requests by route template."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from tests.service.conftest import auth


def test_healthz_needs_no_token_and_reports_ok(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_healthz_is_503_when_the_database_is_unreachable(client: TestClient) -> None:
    app = client.app
    good = app.state.engine  # type: ignore[attr-defined]
    app.state.engine = create_engine(  # type: ignore[attr-defined]
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    try:
        r = client.get("/healthz")
    finally:
        app.state.engine.dispose()  # type: ignore[attr-defined]
        app.state.engine = good  # type: ignore[attr-defined]
    assert r.status_code == 503 and "database unreachable" in r.json()["detail"]


def test_metrics_need_a_token_and_count_by_route_template(
    client: TestClient, tokens: dict[str, str]
) -> None:
    assert client.get("/metrics").status_code == 401
    h = auth(tokens["agent"])
    for _ in range(3):
        client.get(f"/v1/supernets/{'0' * 64}", headers=h)
    text = client.get("/metrics", headers=h).text
    line = 'mess_http_requests_total{method="GET",route="/v1/supernets/{supernet_id}",status="404"}'
    assert f"{line} 3.0" in text
    assert "mess_http_request_duration_seconds_bucket" in text
    assert "0000000000" not in text  # raw paths never become labels


def test_the_service_and_the_client_import_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, service.app, mess.bundle, mess.client, mess.cli.serve; "
        "bad = [m for m in ('torch', 'onnxruntime') if m in sys.modules]; "
        "sys.exit(f'imported: {bad}' if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
