"""A profiling job resumed after its agent died: the real server, real agent processes."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import BIN, Server
from tests.e2e.test_agent_e2e import _agent, _push
from tests.waiting import wait_until

MEASURED = re.compile(r"^INFO profilers\.agent: (\S+): median ", re.MULTILINE)


def _profile(server: Server, sid: str, device: str) -> dict[str, Any]:
    (row,) = server.get("/v1/profiles", supernet_id=sid, device=device).json()["items"]
    profile = dict(server.get(f"/v1/profiles/{row['id']}").json())
    profile["raw"] = server.get(f"/v1/profiles/{row['id']}/raw").json()
    return profile


def _groups(profile: dict[str, Any]) -> set[frozenset[str]]:
    return {frozenset(names) for names in profile["context"]["signatures"].values()}


def test_an_agent_killed_after_its_first_chunk_is_resumed_by_the_next(
    server: Server, tiny_bundle: Path, tmp_path: Path
):
    """SIGKILL once a chunk is stored; the lease runs out (MESS_LEASE_SECONDS=3); a second
    agent times only the parts missing, and the profile has every part, as an unbroken run's."""
    sid = _push(server, tiny_bundle)
    parts = {p["name"] for p in server.get(f"/v1/supernets/{sid}").json()["parts"]}
    token = server.token("agent", "agent-1")
    tier = ("--tier", "smoke")
    victim_log = tmp_path / "victim.log"
    with victim_log.open("wb") as out:
        victim = subprocess.Popen(
            _agent(
                server,
                token,
                "--once",
                *tier,
                "--chunk-parts",
                "1",
                "--cache-dir",
                str(tmp_path / "c1"),
            ),
            stdout=out,
            stderr=out,
        )
    try:
        job = wait_until(
            lambda: next(iter(server.get("/v1/jobs").json()["items"]), None),
            timeout=120,
            message=lambda: f"no job: {victim_log.read_text()[-3000:]}",
        )
        wait_until(
            lambda: server.get(f"/v1/jobs/{job['id']}/timings").json()["parts"],
            timeout=120,
            interval=0.02,  # the kill must land before the victim times every part
            message=lambda: f"no chunk stored: {victim_log.read_text()[-3000:]}",
        )
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    stored = server.get(f"/v1/jobs/{job['id']}/timings").json()
    assert 0 < len(stored["parts"]) < len(parts), victim_log.read_text()[-3000:]
    assert stored["context"]["tier"] == "smoke"
    time.sleep(3.5)  # the lease runs out without heartbeats

    rescue = subprocess.run(
        _agent(server, token, "--once", *tier, "-v", "--cache-dir", str(tmp_path / "c2")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rescue.returncode == 0, rescue.stderr[-3000:]
    assert (
        f"job {job['id']}: resumed, {len(stored['parts'])} part(s) timed already" in rescue.stderr
    )
    measured = set(MEASURED.findall(rescue.stderr))
    assert measured == parts - set(stored["parts"]), rescue.stderr[-3000:]
    (done,) = server.get("/v1/jobs").json()["items"]
    assert done["status"] == "done" and done["attempts"] == 1
    profile = _profile(server, sid, "e2e")
    assert set(profile["raw"]) == parts
    for name, part in stored["parts"].items():
        assert profile["raw"][name] == part["samples_ms"]  # the chunk's runs, not timed again
    assert profile["context"]["resume"] == {
        "parts": len(stored["parts"]),
        "leases": 1,
        "discarded": [],
    }
    assert server.get(f"/v1/jobs/{job['id']}/timings").json()["parts"] == {}

    unbroken = subprocess.run(  # the same supernet on another device, in one go
        [
            *(str(BIN / "mess-agent"), "--server", server.url, "--token", token),
            *("--name", "e2e-ref", "--once", "--tier", "smoke"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    reference = _profile(server, sid, "e2e-ref")
    assert "resume" not in reference["context"]
    assert set(reference["raw"]) == set(profile["raw"])
    for table in ("segments", "heads", "policy"):
        assert set(reference["costs"][table]) == set(profile["costs"][table])
    assert _groups(reference) == _groups(profile)  # the same parts shared the same timings
