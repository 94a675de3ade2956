"""The agent's part cache against the real server: a second supernet that shares parts with
one already profiled downloads only the parts the agent has not got (by sha256)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import zipfile
from pathlib import Path

import onnx
import pytest

from mess.bundle import MANIFEST, write_bundle
from tests.e2e.conftest import ADMIN, BIN, Server


def _push(server: Server, bundle: Path) -> str:
    out = subprocess.run(
        [str(BIN / "mess"), "push", str(bundle), "--server", server.url, "--token", ADMIN]
        + ["--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(out.stdout.strip().splitlines()[-1])["id"])


def _one_part_changed(bundle: Path, dest: Path) -> tuple[Path, str]:
    """The bundle under another name with one head's bytes changed (its doc string): another
    supernet that shares every other part."""
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        files = {n: zf.read(n) for n in zf.namelist() if n != MANIFEST}
    name = next(n for n in sorted(manifest["parts"]) if n.startswith("head/") and n != "head/final")
    ref = manifest["parts"][name]
    model = onnx.load_from_string(files[ref["path"]])
    model.doc_string = "the same head, other bytes"
    files[ref["path"]] = model.SerializeToString()
    ref["sha256"] = hashlib.sha256(files[ref["path"]]).hexdigest()
    manifest["name"] = "sharing"
    write_bundle(dest, manifest, files)
    return dest, name


def _part_downloads(log: Path, supernet: str) -> list[str]:
    pattern = rf'"GET /v1/supernets/{supernet}/parts/(\S+) HTTP/1.1" 200'
    return re.findall(pattern, log.read_text(errors="replace"))


@pytest.mark.timeout(900)  # two agent runs: about a minute, several on a loaded machine
def test_a_second_supernet_downloads_only_the_parts_not_cached(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    server = Server(tmp_path / "data", log=log)
    try:  # stopped also when it fails to start in time
        server.start()
        token = server.token("agent", "agent-1")
        agent = [str(BIN / "mess-agent"), "--server", server.url, "--token", token]
        agent += ["--name", "e2e", "--once", "--tier", "smoke"]
        agent += ["--cache-dir", str(tmp_path / "cache")]
        first = _push(server, tiny_bundle)
        subprocess.run(agent, check=True, capture_output=True, timeout=300)
        with zipfile.ZipFile(tiny_bundle) as zf:
            parts = json.loads(zf.read(MANIFEST))["parts"]
        # parts with the same bytes (a policy or upsampling of one stage) share a cache entry
        downloaded = _part_downloads(log, first)
        digests = {ref["sha256"] for ref in parts.values()}
        assert len(downloaded) == len(set(downloaded)) == len(digests)
        assert {parts[name]["sha256"] for name in downloaded} == digests

        bundle, changed = _one_part_changed(tiny_bundle, tmp_path / "sharing.mess")
        second = _push(server, bundle)
        assert second != first
        subprocess.run(agent, check=True, capture_output=True, timeout=300)
        assert _part_downloads(log, second) == [changed]
        jobs = server.get("/v1/jobs").json()["items"]
        assert sorted(j["status"] for j in jobs) == ["done", "done"]
    finally:
        server.stop()
