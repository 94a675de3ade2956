"""Load on loopback: concurrent budget queries answered from a stored front.

Starts ``mess serve`` (SQLite, local blobs, a temporary folder), pushes a real exported
bundle, uploads a device profile, computes the front once, then runs ``--clients``
concurrent clients (threads, one ``httpx.Client`` each) sending ``POST /v1/search`` with
random budgets for ``--seconds``. Prints requests/s held, p50/p90/p99 latency and errors.
Loopback only, bounded in time.

    python bench/service_load.py [--clients 32] [--seconds 20] [--workers 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

ADMIN = "bench-admin-" + "0" * 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _wrk(url: str, sid: str, lo: float, hi: float, args: argparse.Namespace) -> dict:
    """Closed-loop load from wrk (a separate C process): the numbers are the server's."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT % {"token": ADMIN, "lo": lo, "hi": hi, "sid": sid})
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{args.clients}",
            f"-d{int(args.seconds)}s",
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
        "seconds": args.seconds,
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


def _threads(url: str, h: dict, base: dict, lo: float, hi: float, args: argparse.Namespace) -> dict:
    """Fallback load generator: Python threads (they compete with the server for CPU)."""
    latencies: list[float] = []
    errors: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def client(seed: int) -> None:
        r = random.Random(seed)
        with httpx.Client(base_url=url, headers=h, timeout=30) as c:
            while time.monotonic() < stop_at:
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
    }


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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="mess-load-") as tmp_name:
        tmp = Path(tmp_name)
        bundle = _bundle(tmp)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MESS_DATA_DIR": str(tmp / "data"),
            "MESS_ADMIN_TOKEN": ADMIN,
            "MESS_LOG_LEVEL": "WARNING",
        }
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
            for _ in range(300):
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
            httpx.post(
                f"{url}/v1/jobs/{job['id']}/result",
                headers=h,
                timeout=60,
                json={"lease_id": job["lease_id"], "timings": timings},
            ).raise_for_status()
            base = {"supernet_id": sid, "device": "bench", "objective": "pareto"}
            while True:  # the first query computes the front (202 while it runs)
                answer = httpx.post(f"{url}/v1/search", headers=h, json=base, timeout=600)
                if answer.status_code == 200:
                    first = answer.json()
                    break
                time.sleep(1)
            costs = [p["expected_cost"] for p in first["front"]]
            lo, hi = min(costs), max(costs)

            if shutil.which("wrk") and not args.python_clients:
                row = _wrk(url, sid, lo, hi, args)
            else:
                row = _threads(url, h, base, lo, hi, args)
        finally:
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
    }
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
    if args.json:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
