"""A verified query with the real server and a real ``mess-agent`` timing the model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN, BIN, Server
from tests.e2e.test_agent_e2e import _agent, _push


@pytest.fixture(scope="module")
def sampled_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle with sample images, through ``mess calibrate`` and ``mess export``."""
    import torch

    from mess.nn import build_model, to_supernet

    tmp = tmp_path_factory.mktemp("sampled")
    torch.manual_seed(0)
    sn = to_supernet(
        build_model("torchvision:resnet18", num_classes=4), space="crm1-b0-rdi0-fcn"
    ).eval()
    sn.save(tmp / "sn.pt")
    common = ("--data", "synth", "--length", "6")
    for command in (
        ("calibrate", "--supernet", str(tmp / "sn.pt"), "-o", str(tmp / "stats.npz"))
        + ("--size", "32x32", "--pixel-thresholds", "0.4,0.5", "--device", "cpu", *common),
        ("export", "--supernet", str(tmp / "sn.pt"), "--stats", str(tmp / "stats.npz"))
        + ("--input-size", "32x32", "--sample-images", "4", "-o", str(tmp / "s.mess"), *common),
    ):
        run = subprocess.run(
            [str(BIN / "mess"), *command], capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr
    return tmp / "s.mess"


def test_a_verified_query_is_answered_after_the_agent_times_the_model(
    server: Server, sampled_bundle: Path, tmp_path: Path
) -> None:
    sid = _push(server, sampled_bundle)
    token = server.token("agent", "a")
    profiled = subprocess.run(
        _agent(server, token, "--once", "--tier", "smoke"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert profiled.returncode == 0, profiled.stderr
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        _agent(server, token, "--tier", "smoke", "--poll-seconds", "0.2"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        plain = _query(server, sid, "--objective", "pareto")
        assert plain.returncode == 0, plain.stderr
        assert json.loads(plain.stdout)["verified"] is None
        budget = 3 * max(p["expected_cost"] for p in json.loads(plain.stdout)["front"])
        model = tmp_path / "model.onnx"
        run = _query(server, sid, "--budget-ms", str(budget), "--verify", "-o", str(model))
        assert run.returncode == 0, run.stderr + (tmp_path / "agent.log").read_text()
        # answered from the stored verification; a budget nothing meets names the closest
        text = _query(server, sid, "--budget-ms", str(budget), "--verify", json_out=False)
        assert text.returncode == 0 and "verified on e2e: expected" in text.stdout
        none = _query(server, sid, "--budget-ms", "1e-6", "--verify", json_out=False)
        assert none.returncode == 3 and "closest verified" in none.stderr, none.stderr
    finally:
        agent.terminate()
        agent.wait(timeout=60)
        log.close()
    answer = json.loads(run.stdout)
    verified = answer["verified"]
    assert verified["device"] == "e2e" and verified["expected_ms"] <= budget
    assert len(verified["paths_ms"]) == len(answer["exit_fractions"])
    assert all(t > 0 for t in verified["paths_ms"])
    # onnxruntime takes the exits the PyTorch statistics predict (the parity contract)
    assert verified["exit_agreement"] == 1.0 and len(verified["images"]["exits"]) == 4
    assert verified["images"]["mean_ms"] > 0
    assert verified["context"]["runtime"] == "onnxruntime" and model.stat().st_size > 0
    shown = server.get(f"/v1/configurations/{answer['configuration_id']}").json()
    assert [v["id"] for v in shown["verifications"]] == [verified["id"]]
    profile = server.get(f"/v1/profiles/{answer['profile_id']}").json()
    assert profile["corrections"] and profile["corrections"][0]["verifications"] >= 1


def _query(
    server: Server, sid: str, *args: str, json_out: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(str(BIN / "mess"), "query", "--server", server.url, "--token", ADMIN),
            *("--supernet", sid, "--device", "e2e", *(("--json",) if json_out else ()), *args),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
