"""Faults with real processes: the server killed mid-upload and restarted under load, the
database taken away and given back, two agents of one pool racing for the same jobs.

Every test runs ``mess serve`` (and ``mess-agent``) as real processes on SQLite and, where the
backend matters, on a fresh database of the local PostgreSQL server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from mess.client import MessClient
from tests.e2e.conftest import ADMIN, BIN, Server, TcpProxy
from tests.waiting import wait_until

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> str | None:
    """The server's database: None for its SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def light_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real tiny bundle without its optional torch weights: the same ONNX parts, half
    the bytes, so that pushing several of them stays cheap."""
    from mess.bundle import MANIFEST, write_bundle

    with zipfile.ZipFile(tiny_bundle) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        weights = (manifest.pop("weights", None) or {}).get("path")
        files = {n: zf.read(n) for n in zf.namelist() if n not in (MANIFEST, weights)}
    dest = tmp_path_factory.mktemp("light-bundle") / "light.mess"
    write_bundle(dest, manifest, files)
    return dest


def variants(bundle: Path, dest: Path, count: int) -> list[Path]:
    """``count`` distinct bundles (another zip comment, so another sha256 and supernet id)
    with the same parts; each push of one queues a job per registered device."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = dest / f"variant-{i}.mess"
        shutil.copyfile(bundle, path)
        with zipfile.ZipFile(path, "a") as zf:
            zf.comment = f"variant {i}".encode()
        out.append(path)
    return out


def stored(server: Server, path: str) -> list[dict[str, Any]]:
    """Every item of a paged list route."""
    items: list[dict[str, Any]] = []
    while True:
        page = server.get(path, limit="1000", offset=str(len(items)))
        assert page.status_code == 200, page.text
        batch = page.json()["items"]
        items += batch
        if len(batch) < 1000:
            return items


def agent_token(server: Server, name: str) -> str:
    """A new agent token (through the API: quicker than ``mess token create``)."""
    response = httpx.post(
        f"{server.url}/v1/tokens", json={"name": name, "role": "agent"}, headers=AUTH, timeout=30
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def blob_files(data_dir: Path) -> list[Path]:
    """Every blob and every blob-store temporary file of a local blob folder."""
    root = data_dir / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- upload


def test_a_server_killed_mid_upload_leaves_nothing_behind(light_bundle: Path, tmp_path: Path):
    """SIGKILL while a bundle streams in: after a restart no supernet, job, blob or scratch
    file of it is left, and pushing the bundle again works."""
    data = tmp_path / "data"
    server = Server(data, log=tmp_path / "server.log").start()
    boundary = "mess-fault-boundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="bundle"; filename="light.mess"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = light_bundle.stat().st_size

    def body() -> Iterator[bytes]:
        yield head
        with light_bundle.open("rb") as fh:
            while chunk := fh.read(256 * 1024):
                yield chunk
                time.sleep(0.05)  # about 5 MB/s: the kill lands mid-stream
        yield tail

    outcome: dict[str, Any] = {}

    def upload() -> None:
        try:
            outcome["response"] = httpx.post(
                f"{server.url}/v1/supernets",
                content=body(),
                headers={
                    **AUTH,
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    "Content-Length": str(len(head) + size + len(tail)),
                },
                timeout=60,
            )
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        scratch = data / "tmp"
        partial = wait_until(  # the server has written part of the upload
            lambda: [p for p in scratch.glob("upload-*") if p.stat().st_size > 1 << 20],
            timeout=60,
            interval=0.02,
            message="the upload never reached the server's scratch folder",
        )
        assert partial[0].stat().st_size < size
        server.kill()
        uploader.join(timeout=60)
        assert "error" in outcome, outcome  # the client saw the connection die, no answer
        assert partial[0].exists()  # what the kill left: swept at a start once it is stale,
        stale = time.time() - 2 * 3600  # (a recent one may be another worker's upload)
        for entry in [*scratch.rglob("*"), *(data / "blobs").rglob("*")]:
            os.utime(entry, (stale, stale))

        server.start()
        assert server.get("/v1/supernets").json()["items"] == []
        assert server.get("/v1/jobs").json()["items"] == []
        assert blob_files(data) == []
        leftovers = sorted(p.name for p in scratch.iterdir())
        assert leftovers == [], f"partial upload files survive the restart: {leftovers}"

        with MessClient(server.url, ADMIN) as client:
            pushed = client.push(light_bundle)
        assert pushed["created"] is True
        (row,) = server.get("/v1/supernets").json()["items"]
        assert row["id"] == pushed["id"] and row["size"] == size
        download = server.get(f"/v1/supernets/{row['id']}/bundle")
        assert download.content == light_bundle.read_bytes()
    finally:
        server.stop()


def test_the_start_up_sweep_keeps_recent_scratch_entries(tmp_path: Path):
    """Only stale scratch entries go: a recent one may be a live upload of another worker."""
    from service.uploads import sweep_scratch

    old, recent = tmp_path / "upload-old.mess", tmp_path / "bundle-recent"
    old.write_bytes(b"partial")
    (recent / "parts").mkdir(parents=True)
    (recent / "parts" / "a.onnx").write_bytes(b"extracting")
    stale = time.time() - 2 * 3600
    os.utime(old, (stale, stale))
    os.utime(recent, (stale, stale))  # the folder is old, a file in it is fresh
    assert sweep_scratch(tmp_path, tmp_path / "missing") == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle-recent"]


# --------------------------------------------------------------------------- restarts


class Writers:
    """Client threads writing tokens and devices (cheap, independent rows) as fast as the
    server answers, recording each name the server acknowledged with a 2xx."""

    def __init__(self, server: Server, agent_token: str, threads_per_kind: int = 2) -> None:
        self.server = server
        self.stop = threading.Event()
        self.acked: dict[str, set[str]] = {"token": set(), "device": set()}
        self.refused: list[int] = []  # non-2xx answers
        self.lock = threading.RLock()
        self.ack = threading.Condition(self.lock)
        self.threads = [
            threading.Thread(target=self._run, args=(kind, i, token), daemon=True)
            for kind, token in (("token", ADMIN), ("device", agent_token))
            for i in range(threads_per_kind)
        ]

    def count(self) -> int:
        with self.lock:
            return sum(len(names) for names in self.acked.values())

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self, kind: str, index: int, token: str) -> None:
        path = "/v1/tokens" if kind == "token" else "/v1/devices"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=self.server.url, headers=headers, timeout=20) as client:
            i = 0
            while not self.stop.is_set():
                name = f"{kind}-{index}-{i}"
                i += 1
                body = {"name": name, "role": "agent"} if kind == "token" else {"name": name}
                try:
                    response = client.post(path, json=body)
                except httpx.TransportError:
                    self.stop.wait(0.05)  # the server is down: not acknowledged
                    continue
                with self.ack:
                    if response.is_success:
                        self.acked[kind].add(name)
                        self.ack.notify_all()
                    else:
                        self.refused.append(response.status_code)

    def wait_for(self, total: int, timeout: float = 60) -> None:
        """Until ``total`` writes were acknowledged in all."""
        deadline = time.monotonic() + timeout
        with self.ack:
            while sum(len(n) for n in self.acked.values()) < total:
                left = deadline - time.monotonic()
                assert left > 0, f"only {self.count()} acknowledged writes"
                self.ack.wait(left)

    def next_ack(self, timeout: float = 30) -> None:
        """Return right after the server acknowledges one more write."""
        with self.ack:
            assert self.ack.wait(timeout), "no write acknowledged"


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_every_acknowledged_write_survives_restarts(db_url: str | None, tmp_path: Path):
    """Writers keep going while the server is stopped (SIGTERM) and killed (SIGKILL, right
    after an acknowledgement) and restarted: every 2xx write is there afterwards."""
    server = Server(tmp_path / "data", db_url=db_url, log=tmp_path / "server.log").start()
    agent = agent_token(server, "writer")
    try:
        with Writers(server, agent) as writers:
            for how in ("SIGTERM", "SIGKILL"):
                writers.wait_for(writers.count() + 40)
                if how == "SIGTERM":
                    server.stop()
                else:
                    writers.next_ack()  # kill while an acknowledged write is freshest
                    server.kill()
                server.start()
            writers.wait_for(writers.count() + 20)  # and it takes writes again
        tokens = {t["name"] for t in stored(server, "/v1/tokens")}
        devices = {d["name"] for d in stored(server, "/v1/devices")}
        lost_tokens = sorted(writers.acked["token"] - tokens)
        lost_devices = sorted(writers.acked["device"] - devices)
        assert not lost_tokens and not lost_devices, (
            f"acknowledged but lost: {len(lost_tokens)} of {len(writers.acked['token'])} "
            f"tokens {lost_tokens[:5]}, {len(lost_devices)} of {len(writers.acked['device'])} "
            f"devices {lost_devices[:5]}"
        )
        assert set(writers.refused) <= {503}, writers.refused  # busy or down, never a 500
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_write_failing_at_commit_is_not_acknowledged(postgres_url: str, tmp_path: Path):
    """A transaction that fails at COMMIT (a serialization failure, injected with a deferred
    trigger) must not have been answered 2xx: the answer comes after the commit."""
    from sqlalchemy import create_engine, text

    server = Server(tmp_path / "data", db_url=postgres_url, log=tmp_path / "server.log").start()
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as conn:  # the server has migrated the database by now
            conn.execute(
                text(
                    "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN RAISE EXCEPTION 'injected: % fails at commit', NEW.name "
                    "USING ERRCODE = 'serialization_failure'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON tokens "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                    "WHEN (NEW.name LIKE 'doomed%') EXECUTE FUNCTION fail_at_commit()"
                )
            )
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
            try:
                doomed = client.post("/v1/tokens", json={"name": "doomed", "role": "agent"})
            except httpx.TransportError as exc:
                raise AssertionError(f"no answer at all: {exc!r}") from None
            names = {t["name"] for t in stored(server, "/v1/tokens")}
            assert not (doomed.is_success and "doomed" not in names), (
                f"answered {doomed.status_code} but rolled back at commit: {doomed.text}"
            )
            assert doomed.status_code == 503, doomed.text  # retryable, with a message
            assert "retry" in doomed.json()["detail"]
            fine = client.post("/v1/tokens", json={"name": "fine", "role": "agent"})
            assert fine.status_code == 201, fine.text
    finally:
        engine.dispose()
        server.stop()


# --------------------------------------------------------------------------- database


def _timed(
    client: httpx.Client, method: str, path: str, body: Any = None
) -> tuple[int, str, float]:
    """Status, detail and seconds of one request; a dropped connection fails the test."""
    start = time.monotonic()
    try:
        response = client.request(method, path, json=body)
    except httpx.TransportError as exc:
        raise AssertionError(
            f"{method} {path}: the server dropped the connection ({exc!r})"
        ) from None
    return response.status_code, response.text, time.monotonic() - start


@pytest.mark.postgres
def test_an_unreachable_database_answers_503_and_recovers(postgres_url: str, tmp_path: Path):
    """PostgreSQL behind a TCP proxy: with the link cut (peer down, then peer silent) health
    and data routes answer 503 with a message in bounded time; once the link is back, the
    same server process answers 200 again."""
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    server = Server(tmp_path / "data", db_url=proxied, log=tmp_path / "server.log").start()
    assert server.process is not None
    pid = server.process.pid
    client = httpx.Client(base_url=server.url, headers=AUTH, timeout=60)
    try:
        assert client.post("/v1/devices", json={"name": "before"}).status_code == 201
        assert client.get("/v1/devices").json()["items"][0]["name"] == "before"
        for mode in ("refuse", "blackhole"):
            proxy.cut(mode)
            calls = [
                ("GET", "/healthz", None),
                ("GET", "/v1/devices", None),
                ("POST", "/v1/devices", {"name": f"during-{mode}"}),
            ]
            with ThreadPoolExecutor(len(calls)) as pool:  # at once: a silent peer is slow
                answers = list(pool.map(lambda call: _timed(client, *call), calls))
            for (method, path, _), (status, text, seconds) in zip(calls, answers, strict=True):
                where = f"{mode}: {method} {path}"
                assert status == 503, (where, status, text)
                assert "database" in json.loads(text)["detail"], (where, text)
                assert seconds < 15, f"{where} took {seconds:.1f} s"
        proxy.restore()
        wait_until(
            lambda: client.get("/healthz").status_code == 200,
            timeout=20,
            message="the server did not recover",
        )
        names = {d["name"] for d in client.get("/v1/devices").json()["items"]}
        assert names == {"before"}  # nothing written while the database was away
        assert client.post("/v1/devices", json={"name": "after"}).status_code == 201
        assert server.process.poll() is None and server.process.pid == pid  # no restart
    finally:
        client.close()
        server.stop()
        proxy.close()


# --------------------------------------------------------------------------- agents

JOB_LINE = re.compile(r"^job (\d+) \(([0-9a-f]{12})\): (.*)$", re.MULTILINE)


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_two_agents_of_a_pool_run_each_job_once(
    db_url: str | None, light_bundle: Path, tmp_path: Path
):
    """Two ``mess-agent`` processes with one device name poll the same queue: every job is
    done exactly once (one lease, no lost attempt, one profile version per supernet)."""
    count = 3
    server = Server(
        tmp_path / "data", db_url=db_url, log=tmp_path / "server.log", MESS_LEASE_SECONDS="30"
    ).start()
    with MessClient(server.url, ADMIN) as client:
        ids = [client.push(b)["id"] for b in variants(light_bundle, tmp_path / "b", count)]
    assert len(set(ids)) == count
    agents: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(2):
            log = tmp_path / f"agent-{i}.log"
            command = [
                str(BIN / "mess-agent"),
                "--server",
                server.url,
                "--token",
                agent_token(server, f"agent-{i}"),
                "--name",
                "pool",
                "--tier",
                "smoke",
                "--poll-seconds",
                "0.5",
                "--cache-dir",
                str(tmp_path / f"cache-{i}"),
            ]
            with log.open("wb") as out:
                agents.append((subprocess.Popen(command, stdout=out, stderr=out), log))

        def finished() -> list[dict[str, Any]] | None:
            jobs = server.get("/v1/jobs").json()["items"]
            ended = len(jobs) == count and all(j["status"] in ("done", "failed") for j in jobs)
            return jobs if ended else None

        def logs() -> str:
            return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for _, p in agents)

        jobs = wait_until(
            finished,
            timeout=180,
            interval=0.3,
            message=lambda: (
                f"jobs did not all end: {server.get('/v1/jobs').json()['items']}\n{logs()}"
            ),
        )
        assert [(j["status"], j["attempts"]) for j in jobs] == [("done", 0)] * count, logs()
        assert {j["supernet_id"] for j in jobs} == set(ids)
        for job in jobs:
            profiles = server.get("/v1/profiles", supernet_id=job["supernet_id"], device="pool")
            (profile,) = profiles.json()["items"]
            assert profile["version"] == 1 and profile["id"] == job["profile_id"]
    finally:
        for process, _ in agents:
            process.send_signal(signal.SIGTERM)
        try:
            codes = [process.wait(timeout=60) for process, _ in agents]
        finally:
            for process, _ in agents:
                if process.poll() is None:
                    process.kill()
            server.stop()
    assert codes == [0, 0]
    runs: dict[int, list[str]] = {}
    for _, log in agents:
        text = log.read_text()
        assert "re-leased elsewhere" not in text and "lease of job" not in text, text[-3000:]
        for job_id, _sid, result in JOB_LINE.findall(text):
            assert "failed" not in result, result
            runs.setdefault(int(job_id), []).append(log.name)
    assert sorted(runs) == sorted(j["id"] for j in jobs), runs
    assert all(len(by) == 1 for by in runs.values()), runs  # each job run once, by one agent
