"""End to end: ``mess serve`` as a real uvicorn process, ``mess token create`` and
``mess push`` as real CLI processes against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mess.cli import app
from mess.localhost import free_port
from tests.service.conftest import ADMIN
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mess serve`` on a free loopback port with embedded defaults (SQLite, local blobs)."""
    data = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {
        **os.environ,
        "MESS_DATA_DIR": str(data),
        "MESS_ADMIN_TOKEN": ADMIN,
        "MESS_DATABASE_URL": "",
    }
    env.pop("MESS_DATABASE_URL")
    log_path = data / "serve.log"  # a file, not a pipe nobody reads (a full pipe blocks)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mess", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=data,  # not the repo: the migrations must be found from the package
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if proc.poll() is not None:
                out = log_path.read_text()
                pytest.fail(f"mess serve exited during start-up:\n{out[-3000:]}")
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30, message="mess serve did not answer /healthz")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _mess(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mess", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_create_then_push_a_bundle(server: str, bundle_file: Path) -> None:
    created = _mess(
        "token", "create", "--role", "engineer", "--name", "e2e", "--server", server,
        "--token", ADMIN,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    pushed = _mess("push", str(bundle_file), "--json", MESS_SERVER=server, MESS_TOKEN=token)
    assert pushed.returncode == 0, pushed.stderr
    sid = json.loads(pushed.stdout)["id"]
    headers = {"Authorization": f"Bearer {token}"}
    got = httpx.get(f"{server}/v1/supernets/{sid}/bundle", headers=headers, timeout=10)
    assert got.status_code == 200 and got.content == bundle_file.read_bytes()


def test_push_reports_server_errors_in_one_line(server: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.mess"
    bad.write_bytes(b"not a zip")
    result = CliRunner().invoke(
        app, ["push", str(bad), "--server", server, "--token", ADMIN, "--json"]
    )
    assert result.exit_code != 0
    assert "invalid bundle: not a zip archive" in str(result.exception)
    result = CliRunner().invoke(app, ["push", str(bad), "--server", server, "--token", "nope"])
    assert "(401)" in str(result.exception)
