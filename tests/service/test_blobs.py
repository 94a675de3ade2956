"""Blob stores: content-addressed, deduplicated, atomic; local folder and S3 (moto)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mess.localhost import free_port
from service.app import create_app
from service.blobs import BlobNotFound, BlobStore, LocalBlobStore, S3BlobStore, blob_key
from service.settings import Settings
from tests.service.conftest import ADMIN, auth


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _s3_client(endpoint: str, bucket: str):  # noqa: ANN202
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket=bucket)
    return client


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"b-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    return S3BlobStore(_s3_client(endpoint, bucket), bucket, prefix="mess/")


def test_put_get_dedupe_and_delete(store: BlobStore, tmp_path: Path) -> None:
    data = b"hello blobs" * 1000
    sha = hashlib.sha256(data).hexdigest()
    assert store.put_bytes(data) == (sha, True)
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    assert store.put_file(src) == (sha, False)  # same content: stored once
    assert store.exists(sha) and store.size(sha) == len(data)
    assert b"".join(store.iter_chunks(sha, chunk_size=1000)) == data
    store.delete(sha)
    assert not store.exists(sha)
    with pytest.raises(BlobNotFound):
        store.iter_chunks(sha)
    store.check()


def test_put_file_refuses_a_wrong_expected_digest(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc")
    with pytest.raises(ValueError, match="does not match"):
        store.put_file(src, "0" * 64)
    assert not store.exists(hashlib.sha256(b"abc").hexdigest())


def test_local_layout_is_sharded_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    sha, _ = store.put_bytes(b"x")
    assert store.path(sha) == tmp_path / "blobs" / sha[:2] / sha[2:4] / sha
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_keys_must_be_digests() -> None:
    for bad in ("../../etc/passwd", "ABC", "0" * 63):
        with pytest.raises(ValueError):
            blob_key(bad)


def test_the_app_stores_uploads_in_s3(
    s3_endpoint: str, tmp_path: Path, sqlite_template: Path, bundle_file: Path
) -> None:
    import shutil

    _s3_client(s3_endpoint, "mess-app")
    db = tmp_path / "mess.db"
    shutil.copy(sqlite_template, db)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{db}",
        admin_token=ADMIN,
        blob_backend="s3",
        s3_endpoint_url=s3_endpoint,
        s3_bucket="mess-app",
        s3_region="us-east-1",
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    data = bundle_file.read_bytes()
    with TestClient(create_app(settings)) as client:
        files = {"bundle": ("b.mess", data, "application/zip")}
        r = client.post("/v1/supernets", files=files, headers=auth(ADMIN))
        assert r.status_code == 201, r.text
        got = client.get(f"/v1/supernets/{r.json()['id']}/bundle", headers=auth(ADMIN))
        assert got.content == data
    assert not (settings.data_dir / "blobs").exists()
