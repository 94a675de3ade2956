"""Real processes: ``mess serve`` on a free loopback port, a real exported bundle."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ADMIN = "e2e-admin-0123456789abcdef"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.port = free_port()  # kept across restarts
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.env = {**os.environ, "MESS_DATA_DIR": str(data_dir), "MESS_ADMIN_TOKEN": ADMIN, **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.process = subprocess.Popen(
            [str(BIN / "mess"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def token(self, role: str, name: str) -> str:
        out = subprocess.run(
            [
                str(BIN / "mess"),
                "token",
                "create",
                "--role",
                role,
                "--name",
                name,
                "--server",
                self.url,
                "--token",
                ADMIN,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=30,
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", MESS_LEASE_SECONDS="3").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real exported bundle: ResNet-18 with one light head, 32x32 input."""
    import torch
    from torch.utils.data import TensorDataset

    from mess.nn import build_model, to_supernet
    from mess.nn.calibrate import calibrate
    from mess.nn.export import export_bundle
    from mess.stats import Stats, save_stats

    tmp = tmp_path_factory.mktemp("tiny-bundle")
    torch.manual_seed(0)
    sn = to_supernet(
        build_model("torchvision:resnet18", num_classes=3), space="crm1-b0-rdi0-fcn"
    ).eval()
    data = TensorDataset(torch.rand(6, 3, 32, 32), torch.randint(0, 3, (6, 32, 32)))
    arrays = calibrate(sn, data, pixel_thresholds=[0.4, 0.5])
    meta = json.loads(str(arrays.pop("meta")))
    save_stats(Stats(meta=meta, **arrays), tmp / "stats.npz")
    export_bundle(sn, tmp / "stats.npz", (32, 32), tmp / "tiny.mess")
    return tmp / "tiny.mess"
