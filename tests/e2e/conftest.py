"""Real processes: ``mess serve`` on a free loopback port, a real exported bundle."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mess.localhost import free_port
from tests.postgres import fresh_database
from tests.waiting import wait_until

ADMIN = "e2e-admin-0123456789abcdef"
BIN = Path(sys.executable).parent


class Server:
    def __init__(
        self,
        data_dir: Path,
        *,
        db_url: str | None = None,
        log: Path | None = None,
        workers: int = 1,
        **env: str,
    ) -> None:
        self.workers = workers
        self.port = free_port()  # kept across restarts
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.env = {**os.environ, "MESS_DATA_DIR": str(data_dir), "MESS_ADMIN_TOKEN": ADMIN, **env}
        if db_url is not None:
            self.env["MESS_DATABASE_URL"] = db_url
        self.log = log  # server output, appended across restarts (default: discarded)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        out = self.log.open("ab") if self.log else None
        try:
            self.process = subprocess.Popen(
                [
                    *(str(BIN / "mess"), "serve", "--host", "127.0.0.1", "--port", str(self.port)),
                    *(("--workers", str(self.workers)) if self.workers > 1 else ()),
                ],
                env=self.env,
                stdout=out or subprocess.DEVNULL,
                stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
            )
        finally:
            if out is not None:
                out.close()  # the child has its own copy
        process = self.process

        def healthy() -> bool:
            code = process.poll()
            if code is not None:  # no use waiting out the timeout
                tail = self.log.read_text(errors="replace")[-3000:] if self.log else ""
                raise AssertionError(f"the server exited with {code} at start:\n{tail}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout=60, message=f"the server on {self.url} did not start")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.process is not None:
            self.process.kill()
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
    export_bundle(sn, tmp / "stats.npz", (32, 32), tmp / "tiny.mess", weights=True)
    return tmp / "tiny.mess"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server for one test (the server under test
    migrates it at start-up); dropped afterwards. An unreachable server fails the test in CI
    or with ``MESS_TEST_POSTGRES_URL`` set, and skips it otherwise."""
    with fresh_database("mess_e2e") as url:
        yield url


class TcpProxy:
    """A TCP relay ``127.0.0.1:port -> target`` in threads, to take a link away and back.

    ``cut("refuse")`` resets every relayed connection and resets new ones at once (the peer is
    down); ``cut("blackhole")`` resets the relayed ones and accepts new ones but never answers
    (a peer lost on the network: only the client's own timeout ends the wait).
    ``restore()`` relays new connections again. The port stays the same throughout.

    Args:
        host: the target's host.
        port: the target's port.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.mode = "open"
        self._lock = threading.Lock()
        self._relayed: set[socket.socket] = set()  # both ends; their pump thread closes them
        self._held: set[socket.socket] = set()  # accepted while blackholed, never answered
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                mode = self.mode
            if mode == "refuse":
                _reset(client)
            elif mode == "blackhole":
                with self._lock:
                    self._held.add(client)  # silent until the next cut or restore
            else:
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _reset(client)
                    continue
                upstream.settimeout(None)
                with self._lock:
                    self._relayed.update((client, upstream))
                threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peer[sock].sendall(data)
        except OSError:
            return  # shut down by cut()
        finally:
            with self._lock:
                self._relayed.difference_update((a, b))
            _reset(a)  # only this thread closes them: no fd is closed under its select()
            _reset(b)

    def _drop_all(self) -> None:
        with self._lock:
            relayed, held = list(self._relayed), list(self._held)
            self._held.clear()
        for sock in relayed:
            with contextlib.suppress(OSError):  # wakes its pump thread, which resets both ends
                sock.shutdown(socket.SHUT_RDWR)
        for sock in held:
            _reset(sock)

    def cut(self, mode: str = "refuse") -> None:
        """Take the link away: ``"refuse"`` (peer down) or ``"blackhole"`` (peer silent)."""
        assert mode in ("refuse", "blackhole")
        with self._lock:
            self.mode = mode
        self._drop_all()

    def restore(self) -> None:
        """Relay new connections again (held silent ones are reset)."""
        with self._lock:
            self.mode = "open"
        self._drop_all()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self.listener.close()
        self._drop_all()


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), so the peer sees the connection fail at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
