"""Supernet uploads: validated, stored (blobs + one transaction), idempotent, downloadable."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from service.settings import Settings
from service.supernets.models import Supernet, SupernetPart
from tests.service.conftest import auth, blob_files
from tests.service.factories import bundle_contents


def _push(client: TestClient, token: str, data: bytes, field: str = "bundle"):  # noqa: ANN202
    return client.post(
        "/v1/supernets", files={field: ("b.mess", data, "application/zip")}, headers=auth(token)
    )


def _rows(settings: Settings) -> tuple[int, int]:
    engine = create_engine(settings.db_url)
    with engine.connect() as conn:
        counts = (
            conn.scalar(select(func.count()).select_from(Supernet)) or 0,
            conn.scalar(select(func.count()).select_from(SupernetPart)) or 0,
        )
    engine.dispose()
    return counts


def test_upload_stores_the_bundle_and_reupload_returns_the_same_id(
    client: TestClient, tokens: dict[str, str], bundle_file: Path, settings: Settings
) -> None:
    data = bundle_file.read_bytes()
    first = _push(client, tokens["engineer"], data)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["id"] == hashlib.sha256(data).hexdigest()
    assert body["num_exits"] == 2 and body["num_classes"] == 3
    assert [p["name"] for p in body["positions"]] == ["layer1", "layer2"]
    again = _push(client, tokens["engineer"], data)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    manifest, _ = bundle_contents()
    # one row, its parts, and one blob per distinct member plus the bundle itself
    assert _rows(settings) == (1, len(manifest["parts"]))
    digests = {ref["sha256"] for ref in manifest["parts"].values()}
    digests |= {manifest["stats"]["sha256"], manifest["costs"]["sha256"], body["id"]}
    assert {p.name for p in blob_files(settings)} == digests


def test_summary_list_part_and_bundle_downloads(
    client: TestClient, tokens: dict[str, str], bundle_file: Path
) -> None:
    data = bundle_file.read_bytes()
    sid = _push(client, tokens["engineer"], data).json()["id"]
    h = auth(tokens["agent"])
    listed = client.get("/v1/supernets", headers=h).json()["items"]
    assert [s["id"] for s in listed] == [sid]
    detail = client.get(f"/v1/supernets/{sid}", headers=h).json()
    assert detail["class_names"] == ["c0", "c1", "c2"]
    assert detail["exits"][1]["id"] == "layer2/crm0-b0-rdi0-fcn"
    name = "head/layer2/crm0-b0-rdi0-fcn"
    part = client.get(f"/v1/supernets/{sid}/parts/{name}", headers=h)
    assert part.status_code == 200
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert part.content == zf.read(manifest["parts"][name]["path"])
    bundle = client.get(f"/v1/supernets/{sid}/bundle", headers=h)
    assert bundle.content == data


def test_invalid_bundle_is_400_and_leaves_no_row_and_no_blob(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    manifest, files = bundle_contents()
    files["parts/head__final.onnx"] = b"broken"
    manifest["parts"]["head/final"]["sha256"] = hashlib.sha256(b"broken").hexdigest()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for k, v in files.items():
            zf.writestr(k, v)
    r = _push(client, tokens["engineer"], buf.getvalue())
    assert r.status_code == 400
    assert r.json()["detail"].startswith("invalid bundle: part 'head/final' is not a valid ONNX")
    assert _rows(settings) == (0, 0)
    assert blob_files(settings) == []
    assert list((settings.data_dir / "tmp").iterdir()) == []


@pytest.mark.parametrize("where", ["insert", "after-insert"])
def test_failed_transaction_removes_the_blobs_it_wrote(
    client: TestClient,
    tokens: dict[str, str],
    bundle_file: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Whether the insert itself fails or a later step of the request's transaction (queuing
    its profiling jobs), the rollback leaves neither a row nor a blob."""
    from service.supernets import repository

    def fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database went away")

    if where == "insert":
        monkeypatch.setattr(repository, "insert_missing", fail)
    else:
        state = client.app.state  # type: ignore[attr-defined]
        monkeypatch.setattr(state, "hooks", replace(state.hooks, supernet_stored=fail))
    client_no_raise = TestClient(client.app, raise_server_exceptions=False)
    r = _push(client_no_raise, tokens["engineer"], bundle_file.read_bytes())
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
    assert _rows(settings) == (0, 0)
    assert blob_files(settings) == []


def test_upload_larger_than_the_limit_is_413(client: TestClient, tokens: dict[str, str]) -> None:
    r = _push(client, tokens["engineer"], b"\0" * (1024 * 1024 + 1))  # limit: 1 MB
    assert r.status_code == 413
    assert "MESS_MAX_UPLOAD_MB" in r.json()["detail"]


def test_upload_with_a_lying_content_length_is_413(
    client: TestClient, tokens: dict[str, str]
) -> None:
    def body():  # noqa: ANN202 - a streamed body: no Content-Length, just too many bytes
        yield b'--b\r\nContent-Disposition: form-data; name="bundle"; filename="x"\r\n\r\n'
        for _ in range(20):
            yield b"\0" * 65536

    headers = {**auth(tokens["engineer"]), "Content-Type": "multipart/form-data; boundary=b"}
    r = client.post("/v1/supernets", content=body(), headers=headers)
    assert r.status_code == 413


def test_upload_without_the_bundle_field_is_400(
    client: TestClient, tokens: dict[str, str], bundle_file: Path
) -> None:
    r = _push(client, tokens["engineer"], bundle_file.read_bytes(), field="file")
    assert r.status_code == 400 and "no file field 'bundle'" in r.json()["detail"]
    r = client.post("/v1/supernets", json={"a": 1}, headers=auth(tokens["engineer"]))
    assert r.status_code == 400 and "multipart/form-data" in r.json()["detail"]


def test_agents_cannot_upload(
    client: TestClient, tokens: dict[str, str], bundle_file: Path
) -> None:
    assert _push(client, tokens["agent"], bundle_file.read_bytes()).status_code == 403


def test_unknown_or_malformed_ids_are_404_or_422(
    client: TestClient, tokens: dict[str, str], bundle_file: Path
) -> None:
    h = auth(tokens["agent"])
    missing = "0" * 64
    assert client.get(f"/v1/supernets/{missing}", headers=h).status_code == 404
    assert client.get(f"/v1/supernets/{missing}/bundle", headers=h).status_code == 404
    assert client.get("/v1/supernets/..%2F..%2Fetc", headers=h).status_code in (404, 422)
    assert client.get("/v1/supernets/ABC", headers=h).status_code == 422
    sid = _push(client, tokens["engineer"], bundle_file.read_bytes()).json()["id"]
    for name in ("head/nope", "../../../../etc/passwd", "parts/head__final.onnx"):
        r = client.get(f"/v1/supernets/{sid}/parts/{name}", headers=h)
        assert r.status_code == 404, name
        assert "detail" in r.json()
