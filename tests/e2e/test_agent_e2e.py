"""The real server and the real agent process: profiling jobs end to end."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import ADMIN, BIN, Server
from tests.waiting import wait_until


def _push(server: Server, bundle: Path) -> str:
    out = subprocess.run(
        [
            str(BIN / "mess"),
            "push",
            str(bundle),
            "--server",
            server.url,
            "--token",
            ADMIN,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(out.stdout.strip().splitlines()[-1])["id"])


def _agent(server: Server, token: str, *extra: str) -> list[str]:
    return [
        str(BIN / "mess-agent"),
        "--server",
        server.url,
        "--token",
        token,
        "--name",
        "e2e",
        *extra,
    ]


def _leased(server: Server) -> bool:
    """The one job is leased (the agent is on it)."""
    return [j["status"] for j in server.get("/v1/jobs").json()["items"]] == ["leased"]


def test_agent_profiles_a_pushed_supernet(server: Server, tiny_bundle: Path, tmp_path: Path):
    sid = _push(server, tiny_bundle)
    token = server.token("agent", "agent-1")
    run = subprocess.run(
        _agent(server, token, "--once", "--tier", "smoke", "--cache-dir", str(tmp_path / "c")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "1 job(s) done" in run.stdout
    jobs = server.get("/v1/jobs").json()["items"]
    assert [(j["status"], j["device"]) for j in jobs] == [("done", "e2e")]
    profiles = server.get("/v1/profiles", supernet_id=sid, device="e2e").json()["items"]
    assert len(profiles) == 1
    profile = server.get(f"/v1/profiles/{profiles[0]['id']}").json()
    assert profile["costs"]["unit"] == "ms"
    assert all(v > 0 for v in profile["costs"]["segments"].values())
    wholes = profile["context"]["wholes"]
    assert len(wholes) == 3 and all(w["measured_ms"] > 0 for w in wholes)
    speed = profile["context"]["speed"]  # the device's own speed, probed over the profile
    assert len(speed["medians_ms"]) >= 2 and speed["spread_pct"] >= 0


def test_a_bad_token_exits_2_with_one_line(server: Server):
    run = subprocess.run(
        _agent(server, "forged-token", "--once"), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error: the server refused the token")
    assert "Traceback" not in run.stderr


def test_a_killed_agent_loses_nothing(server: Server, tiny_bundle: Path, tmp_path: Path):
    """SIGKILL mid-job: the lease expires, the pool re-runs the job once, one profile."""
    sid = _push(server, tiny_bundle)
    token = server.token("agent", "agent-1")
    victim = subprocess.Popen(
        _agent(server, token, "--once", "--tier", "full-fixed", "--no-share"),  # slow on purpose
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: _leased(server), timeout=120, message="the agent never leased the job")
    time.sleep(1.0)  # it is measuring now
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    time.sleep(3.5)  # MESS_LEASE_SECONDS=3: the lease runs out without heartbeats
    run = subprocess.run(
        _agent(server, token, "--once", "--tier", "smoke"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    (job,) = server.get("/v1/jobs").json()["items"]
    assert job["status"] == "done" and job["attempts"] == 1
    profiles = server.get("/v1/profiles", supernet_id=sid, device="e2e").json()["items"]
    assert len(profiles) == 1


def test_sigterm_releases_the_current_job(server: Server, tiny_bundle: Path):
    _push(server, tiny_bundle)
    token = server.token("agent", "agent-1")
    agent = subprocess.Popen(
        _agent(server, token, "--once", "--tier", "full-fixed", "--no-share"),  # slow on purpose
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: _leased(server), timeout=120, message="the agent never leased the job")
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=120) == 0
    (job,) = server.get("/v1/jobs").json()["items"]
    assert job["status"] == "queued" and job["attempts"] == 0


def test_the_agent_carries_on_across_a_server_restart(
    server: Server, tiny_bundle: Path, tmp_path: Path
):
    """Stop the server while the agent polls; restart it on the same port and data."""
    token = server.token("agent", "agent-1")
    log = tmp_path / "agent.log"  # a file, not a pipe nobody reads: a full pipe blocks the agent
    agent = subprocess.Popen(
        _agent(
            server,
            token,
            "--tier",
            "smoke",
            "--poll-seconds",
            "0.5",
            "--cache-dir",
            str(tmp_path / "c"),
        ),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: server.get("/v1/devices").json()["items"],
            timeout=60,
            message=lambda: f"the agent did not register:\n{log.read_text()[-4000:]}",
        )
        server.stop()
        time.sleep(3.0)  # the agent's polls fail and back off meanwhile
        server.start()
        sid = _push(server, tiny_bundle)  # acknowledged before the restart: the device row

        def done() -> list[dict[str, Any]] | None:
            jobs = server.get("/v1/jobs").json()["items"]
            return jobs if jobs and jobs[0]["status"] == "done" else None

        jobs = wait_until(
            done,
            timeout=240,
            interval=0.5,
            message=lambda: (
                f"no job done: {server.get('/v1/jobs').json()['items']}\n{log.read_text()[-4000:]}"
            ),
        )
        assert jobs[0]["supernet_id"] == sid
        assert agent.poll() is None, log.read_text()[-4000:]  # still waiting for more work
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
