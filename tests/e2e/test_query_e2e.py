"""From push to a tailored model over HTTP: profile, query, download, run, compare."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from mess.nn import load_supernet
from mess.nn.runtime import infer
from tests.e2e.conftest import ADMIN, BIN, Server
from tests.e2e.test_agent_e2e import _agent, _push


def _query(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mess"), "query", "--server", server.url, "--token", ADMIN, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_query_downloads_a_model_that_matches_the_pytorch_policy(
    server: Server, tiny_bundle: Path, tmp_path: Path
) -> None:
    sid = _push(server, tiny_bundle)
    agent = subprocess.run(
        _agent(server, server.token("agent", "a"), "--once", "--tier", "smoke"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert agent.returncode == 0, agent.stderr
    model_path = tmp_path / "model.onnx"
    run = _query(
        server,
        "--supernet",
        sid,
        "--device",
        "e2e",
        "--objective",
        "pareto",
        "-o",
        str(model_path),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["configuration_id"] and answer["unit"] == "ms" and answer["front"]
    model = onnx.load(str(model_path))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["mess.configuration"]) == answer["configuration"]
    sn = load_supernet(tiny_bundle)
    assert props["mess.supernet"] == sn.digest()
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for _ in range(4):
        image = rng.random((3, 32, 32), dtype=np.float32)
        logits, exit_index = session.run(None, {"image": image[None]})
        ref, ref_exit = infer(sn, torch.from_numpy(image), answer["configuration"])
        assert int(exit_index) == ref_exit
        assert np.abs(logits - ref.numpy()).max() <= 1e-4 * np.abs(ref.numpy()).max()

    # without the truncated configurations: a smaller space, every answer runs to final
    plain = _query(
        server,
        "--supernet",
        sid,
        "--device",
        "e2e",
        "--objective",
        "pareto",
        "--no-truncation",
        "--json",
    )
    assert plain.returncode == 0, plain.stderr
    cut = json.loads(plain.stdout)
    assert 0 < cut["configs_evaluated"] < answer["configs_evaluated"]
    assert cut["configuration"]["terminal"] == "final"

    infeasible = _query(server, "--supernet", sid, "--device", "e2e", "--budget-ms", "1e-9")
    assert infeasible.returncode == 3, infeasible.stderr
    assert "error:" in infeasible.stderr and "Traceback" not in infeasible.stderr


def test_two_workers_start_on_a_fresh_database_and_share_it(tmp_path: Path) -> None:
    """``mess serve --workers 2`` on an empty data folder: migrated once before the workers
    start (they raced on SQLite before), both serve, writes of one are seen by the other."""
    import concurrent.futures

    import httpx

    server = Server(tmp_path / "data", workers=2).start()
    try:
        h = {"Authorization": f"Bearer {ADMIN}"}

        def create(i: int) -> int:
            body = {"name": f"dev-{i}", "role": "agent"}
            return httpx.post(f"{server.url}/v1/tokens", json=body, headers=h).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(create, range(40))) == [201] * 40
        for _ in range(10):  # new connections: both workers answer, all see the 40 tokens
            listed = httpx.get(f"{server.url}/v1/tokens", params={"limit": 100}, headers=h)
            assert len(listed.json()["items"]) == 40
    finally:
        server.stop()
