"""A large bundle pushed through a real server and the streaming client, on a 1 MB limit.

The bundle's ``supernet.pt`` member is padded (random bytes do not compress) to land just
under or just over the limits; a refused push leaves no row, no blob and no scratch file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mess.bundle import write_bundle
from mess.client import ClientError, MessClient
from tests.e2e.conftest import Server
from tests.service.factories import bundle_contents

MB = 1 << 20


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", MESS_MAX_UPLOAD_MB="1")
    try:  # stopped also when it fails to start in time
        yield srv.start()
    finally:
        srv.stop()


def _padded(path: Path, random_bytes: int, zeros: int = 0) -> Path:
    """A valid bundle whose weights member holds ``random_bytes`` then ``zeros``."""
    manifest, files = bundle_contents(name=path.stem)
    weights = np.random.default_rng(random_bytes).bytes(random_bytes) + b"\0" * zeros
    files["supernet.pt"] = weights
    manifest["weights"] = {"path": "supernet.pt", "sha256": hashlib.sha256(weights).hexdigest()}
    write_bundle(path, manifest, files)
    return path


def _sized(path: Path, size: int) -> Path:
    """A padded bundle of about ``size`` bytes (the other members and zip headers first)."""
    overhead = _padded(path, size).stat().st_size - size
    return _padded(path, size - overhead)


def _nothing_stored(server: Server) -> None:
    assert server.get("/v1/supernets").json()["items"] == []
    assert [p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()] == []
    assert [p for p in (server.data_dir / "tmp").rglob("*") if p.is_file()] == []


def test_a_streamed_push_is_refused_past_the_limits_and_passes_under_them(
    small_server: Server, tmp_path: Path
) -> None:
    token = small_server.token("engineer", "ci")
    with MessClient(small_server.url, token) as client:
        over = _sized(tmp_path / "over.mess", MB + 1024)
        with pytest.raises(ClientError) as refused:
            client.push(over)
        assert refused.value.status_code == 413
        assert "1 MB limit (MESS_MAX_UPLOAD_MB)" in str(refused.value)
        _nothing_stored(small_server)

        # under the upload limit, but 9 MB once uncompressed: past the 8 MB member limit
        bomb = _padded(tmp_path / "member.mess", 200 * 1024, 9 * MB)
        assert bomb.stat().st_size < MB
        with pytest.raises(ClientError) as refused:
            client.push(bomb)
        assert refused.value.status_code == 400
        assert f"'supernet.pt' is {200 * 1024 + 9 * MB} bytes uncompressed, more than " in str(
            refused.value
        )
        _nothing_stored(small_server)

        under = _sized(tmp_path / "under.mess", MB - 1024)  # the multipart adds ~200 B
        assert MB - 2048 < under.stat().st_size < MB - 512
        stored = client.push(under)
        assert stored["created"] and stored["id"] == hashlib.sha256(under.read_bytes()).hexdigest()
        listed = small_server.get("/v1/supernets").json()
        assert [s["id"] for s in listed["items"]] == [stored["id"]]
