"""Load on loopback: concurrent budget queries answered from a stored front.

Starts ``mess serve`` (SQLite, local blobs, a temporary folder), pushes a real exported
bundle, uploads a device profile, computes the front once, then runs ``--clients``
concurrent clients (threads, one ``httpx.Client`` each) sending ``POST /v1/search`` with
random budgets for ``--seconds``. Prints requests/s held, p50/p90/p99 latency and errors.
Loopback only, bounded in time.

    python -m bench.service_load [--clients 32] [--seconds 20] [--workers 1] [--json]
        [--db sqlite|postgresql] [--mixed | --during-search [--positions 16 --heads 36 ...]]

``--db postgresql`` runs the server on a fresh database of the PostgreSQL server at
``--postgres-url`` (dropped afterwards). ``--during-search``: the server is API-only and a
``mess worker`` process runs the searches; the queries are measured alone and while a big
search runs (:mod:`bench.service_search_load`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench import service_search_load
from mess.localhost import free_port

ADMIN = "bench-admin-" + "0" * 20


def _bundle(folder: Path) -> Path:
    import torch
    from torch.utils.data import TensorDataset

    from mess.nn import build_model, to_supernet
    from mess.nn.calibrate import calibrate
    from mess.nn.export import export_bundle
    from mess.stats import Stats, save_stats

    torch.manual_seed(0)
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=8), space="tiny").eval()
    data = TensorDataset(torch.rand(64, 3, 32, 32), torch.randint(0, 8, (64, 32, 32)))
    arrays = calibrate(sn, data, pixel_thresholds=[0.3, 0.5, 0.7], batch_size=16)
    meta = json.loads(str(arrays.pop("meta")))
    save_stats(Stats(meta=meta, **arrays), folder / "stats.npz")
    export_bundle(sn, folder / "stats.npz", (32, 32), folder / "bench.mess", check=False)
    return folder / "bench.mess"


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
math.randomseed(0)
request = function()
  local b = %(lo)f + math.random() * (%(hi)f - %(lo)f)
  local body = string.format('{"supernet_id":"%(sid)s","device":"bench",'
    .. '"objective":"max-accuracy","budget_ms":%%.6f}', b)
  return wrk.format(nil, "/v1/search", nil, body)
end
"""


def _ms(text: str) -> float:
    value, unit = re.match(r"([0-9.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _wrk(
    url: str, sid: str, lo: float, hi: float, args: argparse.Namespace, seconds: float | None = None
) -> dict:
    """Closed-loop load from wrk (a separate C process): the numbers are the server's.

    Runs ``seconds`` (default ``args.seconds``; wrk counts whole seconds)."""
    seconds = max(1, round(args.seconds if seconds is None else seconds))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT % {"token": ADMIN, "lo": lo, "hi": hi, "sid": sid})
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{args.clients}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            fh.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(fh.name).unlink()
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "generator": "wrk",
        "seconds": seconds,
        "requests": requests,
        "requests_per_s": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(pct["50"]),
        "p90_ms": _ms(pct["90"]),
        "p99_ms": _ms(pct["99"]),
        "errors": {
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket": errors.group(1) if errors else "",
        },
    }


def _threads(
    url: str,
    h: dict,
    base: dict,
    lo: float,
    hi: float,
    args: argparse.Namespace,
    stop: threading.Event | None = None,
) -> dict:
    """Fallback load generator: Python threads (they compete with the server for CPU).

    Runs ``args.seconds``, or until ``stop`` is set when given."""
    latencies: list[float] = []
    errors: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def running() -> bool:
        return not stop.is_set() if stop is not None else time.monotonic() < stop_at

    def client(seed: int) -> None:
        r = random.Random(seed)
        with httpx.Client(base_url=url, headers=h, timeout=30) as c:
            while running():
                body = {**base, "objective": "max-accuracy", "budget_ms": r.uniform(lo, hi)}
                start = time.perf_counter()
                resp = c.post("/v1/search", json=body)
                elapsed = (time.perf_counter() - start) * 1e3
                with lock:
                    latencies.append(elapsed)
                    if resp.status_code != 200:
                        errors[resp.status_code] = errors.get(resp.status_code, 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    lat = np.asarray(latencies)
    return {
        "generator": "python-threads",
        "seconds": wall,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": errors,
        "until_stopped": stop is not None,
    }


class _Writers:
    """Writes alongside the query load (``--mixed``): profile uploads and agents' job cycles.

    Each uploader posts new versions of a device profile; each agent registers a new device
    (which queues a profiling job), leases it, heartbeats and uploads synthetic timings.
    Every write the server acknowledged is checked afterwards: ``lost`` counts the missing.
    """

    def __init__(self, url: str, h: dict, sid: str, parts: list[str], costs: dict) -> None:
        self.url, self.h, self.sid, self.parts, self.costs = url, h, sid, parts, costs
        self.latencies: dict[str, list[float]] = {"upload": [], "agent": []}
        self.errors: dict[str, dict[int, int]] = {"upload": {}, "agent": {}}
        self.acked: list[int] = []  # profile ids the server acknowledged
        self.lock = threading.Lock()

    def _timed(self, kind: str, c: httpx.Client, method: str, path: str, **kw) -> httpx.Response:
        start = time.perf_counter()
        r = c.request(method, path, **kw)
        with self.lock:
            self.latencies[kind].append((time.perf_counter() - start) * 1e3)
            if not r.is_success:
                self.errors[kind][r.status_code] = self.errors[kind].get(r.status_code, 0) + 1
        return r

    def uploader(self, i: int, stop_at: float) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=self.url, headers=self.h, timeout=60) as c:
            device = f"bench-up-{i}"
            c.post("/v1/devices", json={"name": device}).raise_for_status()
            while time.monotonic() < stop_at:
                scale = rng.uniform(0.5, 2.0)
                costs = {
                    **self.costs,
                    **{
                        k: {n: v * scale for n, v in self.costs[k].items()}
                        for k in ("segments", "heads", "policy")
                    },
                }
                body = {"supernet_id": self.sid, "device": device, "costs": costs}
                r = self._timed("upload", c, "POST", "/v1/profiles", json=body)
                if r.is_success:
                    with self.lock:
                        self.acked.append(r.json()["id"])

    def agent(self, i: int, stop_at: float) -> None:
        rng = random.Random(100 + i)
        n = 0
        with httpx.Client(base_url=self.url, headers=self.h, timeout=60) as c:
            while time.monotonic() < stop_at:
                n += 1
                device = f"bench-agent-{i}-{n}"
                r = self._timed("agent", c, "POST", "/v1/devices", json={"name": device})
                if not r.is_success:
                    continue
                r = self._timed("agent", c, "POST", "/v1/jobs/lease", json={"device": device})
                if r.status_code != 200:
                    continue
                job = r.json()["job"]
                lease = {"lease_id": job["lease_id"]}
                self._timed("agent", c, "POST", f"/v1/jobs/{job['id']}/heartbeat", json=lease)
                timings = {p: [rng.uniform(0.1, 2.0) for _ in range(5)] for p in self.parts}
                r = self._timed(
                    "agent",
                    c,
                    "POST",
                    f"/v1/jobs/{job['id']}/result",
                    json={**lease, "timings": timings},
                )
                if r.is_success:
                    with self.lock:
                        self.acked.append(r.json()["profile_id"])

    def run(self, uploaders: int, agents: int, stop_at: float) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.uploader, args=(i, stop_at)) for i in range(uploaders)
        ] + [threading.Thread(target=self.agent, args=(i, stop_at)) for i in range(agents)]
        for t in threads:
            t.start()
        return threads

    def rows(self, seconds: float) -> list[dict]:
        """One row per kind, then the check that every acknowledged write is stored."""
        lost = 0
        with httpx.Client(base_url=self.url, headers=self.h, timeout=60) as c:
            for pid in self.acked:
                lost += c.get(f"/v1/profiles/{pid}").status_code != 200
        out = []
        for kind, lat in self.latencies.items():
            arr = np.asarray(lat or [float("nan")])
            out.append(
                {
                    "kind": kind,
                    "requests": len(lat),
                    "requests_per_s": len(lat) / seconds,
                    "p50_ms": float(np.percentile(arr, 50)),
                    "p90_ms": float(np.percentile(arr, 90)),
                    "p99_ms": float(np.percentile(arr, 99)),
                    "errors": self.errors[kind],
                }
            )
        out.append({"kind": "acknowledged profiles", "requests": len(self.acked), "lost": lost})
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--python-clients",
        action="store_true",
        help="use Python threads instead of wrk as the load generator",
    )
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="also run profile uploaders and agents' job cycles during the query load, and "
        "check afterwards that every acknowledged write is stored",
    )
    parser.add_argument("--uploaders", type=int, default=2)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MESS_TEST_POSTGRES_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="the server on which --db postgresql creates (and drops) its database",
    )
    parser.add_argument(
        "--during-search",
        action="store_true",
        help="API-only server and a mess worker process: queries alone, a big search alone, "
        "then queries while the big search runs",
    )
    service_search_load.add_arguments(parser)
    args = parser.parse_args()
    if args.during_search and args.mixed:
        parser.error("--during-search and --mixed are separate runs")
    with _database(args) as db_url:
        _run(args, db_url)


@contextlib.contextmanager
def _database(args: argparse.Namespace) -> Iterator[str | None]:
    """None (the server's SQLite file), or a fresh PostgreSQL database, dropped after."""
    if args.db == "sqlite":
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(args.postgres_url)
    name = f"mess_bench_{os.getpid()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _run(args: argparse.Namespace, db_url: str | None) -> None:
    writes: list[dict] = []
    console = Console(width=120, stderr=args.json)  # --json: stdout holds the JSON line alone
    with tempfile.TemporaryDirectory(prefix="mess-load-") as tmp_name:
        tmp = Path(tmp_name)
        bundle = _bundle(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MESS_DATA_DIR": str(tmp / "data"),
            "MESS_ADMIN_TOKEN": ADMIN,
            "MESS_LOG_LEVEL": "WARNING",
            # the limiter stays in the path (its cost is measured) but refuses nothing: all
            # clients share one token here
            "MESS_RATE_LIMIT_PER_MINUTE": "1000000000",
            "MESS_RATE_LIMIT_BURST": "1000000",
        }
        if db_url is not None:
            env["MESS_DATABASE_URL"] = db_url
        worker = None
        if args.during_search:
            env["MESS_EMBEDDED_WORKER"] = "0"  # the searches run in the worker below
        log = open(tmp / "server.log", "wb")  # noqa: SIM115 (closed after the server)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mess",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            h = {"Authorization": f"Bearer {ADMIN}"}
            if args.during_search:
                worker = service_search_load.start_worker(
                    env, tmp / "worker.log", args.search_threads
                )
            for _ in range(300):
                if server.poll() is not None:
                    log.flush()
                    tail = (tmp / "server.log").read_text(errors="replace")[-2000:]
                    raise SystemExit(f"the server exited with {server.returncode}:\n{tail}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            with open(bundle, "rb") as fh:
                sid = httpx.post(
                    f"{url}/v1/supernets", headers=h, timeout=120, files={"bundle": ("b.mess", fh)}
                ).json()["id"]
            httpx.post(f"{url}/v1/devices", headers=h, json={"name": "bench"}).raise_for_status()
            info = httpx.get(f"{url}/v1/supernets/{sid}", headers=h).json()
            rng = random.Random(0)
            timings = {p["name"]: [rng.uniform(0.1, 2.0)] for p in info["parts"]}
            lease = httpx.post(f"{url}/v1/jobs/lease", headers=h, json={"device": "bench"})
            job = lease.json()["job"]
            result = httpx.post(
                f"{url}/v1/jobs/{job['id']}/result",
                headers=h,
                timeout=60,
                json={"lease_id": job["lease_id"], "timings": timings},
            )
            result.raise_for_status()
            profile = httpx.get(f"{url}/v1/profiles/{result.json()['profile_id']}", headers=h)
            base = {"supernet_id": sid, "device": "bench", "objective": "pareto"}
            while True:  # the first query computes the front (202 while it runs)
                answer = httpx.post(f"{url}/v1/search", headers=h, json=base, timeout=600)
                if answer.status_code == 200:
                    first = answer.json()
                    break
                time.sleep(1)
            costs = [p["expected_cost"] for p in first["front"]]
            lo, hi = min(costs), max(costs)

            writers = _Writers(
                url, h, sid, [p["name"] for p in info["parts"]], profile.json()["costs"]
            )
            threads = (
                writers.run(args.uploaders, args.agents, time.monotonic() + args.seconds)
                if args.mixed
                else []
            )
            use_wrk = shutil.which("wrk") is not None and not args.python_clients
            if args.during_search:

                def load(stop: threading.Event | None, seconds: float | None) -> dict:
                    if use_wrk:  # a fixed window (wrk cannot be told to stop)
                        return _wrk(url, sid, lo, hi, args, seconds)
                    return _threads(url, h, base, lo, hi, args, stop)  # until the search ends

                searched = service_search_load.during_search(url, h, load, args)
                row = dict(searched["queries_during_search"])
            elif use_wrk:
                row = _wrk(url, sid, lo, hi, args)
            else:
                row = _threads(url, h, base, lo, hi, args)
            for t in threads:
                t.join()
            if args.mixed:
                writes = writers.rows(args.seconds)
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=60)
            server.terminate()
            server.wait(timeout=30)
            log.close()
            log_lines = (tmp / "server.log").read_text(errors="replace").splitlines()
            problems = [
                line
                for line in log_lines
                if "Error" in line or "[SQL" in line or "service/" in line
            ]
            if problems:
                console.print("server log (errors):", *problems[-8:], sep="\n")
    row |= {
        "front_points": len(first["front"]),
        "configs_in_space": first["configs_evaluated"],
        "clients": args.clients,
        "workers": args.workers,
        "db": args.db,
    }
    if args.during_search:
        _print_during(console, searched, args)
        row["during_search"] = searched
    table = Table(title="budget queries from a stored front, loopback")
    for key in (
        "clients",
        "workers",
        "requests",
        "requests_per_s",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "errors",
    ):
        table.add_column(key)
    table.add_row(
        *(
            f"{row[k]:.1f}" if isinstance(row[k], float) else str(row[k])
            for k in (
                "clients",
                "workers",
                "requests",
                "requests_per_s",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "errors",
            )
        )
    )
    console.print(table)
    if writes:
        table = Table(title="writes during the query load (Python clients)")
        for key in ("kind", "requests", "requests_per_s", "p50_ms", "p99_ms", "errors", "lost"):
            table.add_column(key)
        for w in writes:
            table.add_row(
                *(
                    f"{w[k]:.1f}" if isinstance(w.get(k), float) else str(w.get(k, ""))
                    for k in (
                        "kind",
                        "requests",
                        "requests_per_s",
                        "p50_ms",
                        "p99_ms",
                        "errors",
                        "lost",
                    )
                )
            )
        console.print(table)
        row["writes"] = writes
    if args.json:
        print(json.dumps(row))


def _print_during(console: Console, out: dict, args: argparse.Namespace) -> None:
    table = Table(
        title=f"budget queries while a search of {out['configs_in_space']:,} configurations "
        f"runs in a mess worker ({args.db})"
    )
    for key in ("phase", "requests", "requests_per_s", "p50_ms", "p99_ms", "errors"):
        table.add_column(key)
    for name, key in (("no search", "queries_alone"), ("search running", "queries_during_search")):
        q = out[key]
        table.add_row(
            name,
            str(q["requests"]),
            f"{q['requests_per_s']:.0f}",
            f"{q['p50_ms']:.1f}",
            f"{q['p99_ms']:.1f}",
            str(q["errors"]),
        )
    console.print(table)
    console.print(
        f"search alone {out['search_alone_s']:.1f} s, under the query load "
        f"{out['search_under_load_s']:.1f} s; p99 <= 50 ms during the search: "
        f"{'met' if out['goal_met'] else 'NOT met'}"
    )
    if not out["load_within_search"]:
        console.print("the search ended before the load window did: part of it ran without one")


if __name__ == "__main__":
    main()
