"""``python -m bench.service_load --during-search``: budget queries while a big search runs.

The server is API-only (``MESS_EMBEDDED_WORKER=0``); searches run in one ``mess worker``
process on the same machine. Three phases, one after the other:

1. the query load alone (``--seconds``);
2. a big search alone: a random supernet of ``--positions x --heads`` exits (as
   ``bench/search.py`` draws it) pushed as a bundle of tiny ONNX parts, one device profile;
3. the same search for a second device (another cost table, so a new front) with the query
   load running from the moment the worker claims it: until it is stored (Python clients),
   or for as long as the search took alone (wrk runs a fixed window; ``load_within_search``
   says whether the search was still running when the window ended).

Reports p50/p99 of the queries in phases 1 and 3 and the search's own time (the worker's
``seconds``) in phases 2 and 3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from onnx import TensorProto, helper

from mess.bundle import head_part, policy_part, upsample_part, write_bundle
from mess.costs import save_costs
from mess.stats import save_stats
from mess.testing import random_costs, random_stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--during-search (bench/search.py's space)")
    group.add_argument("--positions", type=int, default=16)
    group.add_argument("--heads", type=int, default=36)
    group.add_argument("--samples", type=int, default=500)
    group.add_argument("--classes", type=int, default=19)
    group.add_argument("--max-exits", type=int, default=3)
    group.add_argument("--pixel-thresholds", type=int, default=5)
    group.add_argument(
        "--truncation",
        action="store_true",
        help="search the truncated configurations too, as the service does by default "
        "(bench/search.py's space leaves them out: 118 times more at the paper's space)",
    )
    group.add_argument(
        "--search-threads",
        type=int,
        help="the worker's MESS_SEARCH_THREADS (default: unset, every core)",
    )


def _identity(name: str) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], name.replace("/", "_"), [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def random_bundle(folder: Path, args: argparse.Namespace) -> tuple[Path, Any]:
    """A bundle of a random space (stats as ``bench/search.py`` draws them; every part a
    tiny Identity graph: only the search is measured here) and its stats."""
    pixel = [round(0.5 + 0.1 * i, 2) for i in range(args.pixel_thresholds)]
    stats = random_stats(
        num_samples=args.samples,
        num_classes=args.classes,
        positions=args.positions,
        heads=args.heads,
        pixel_thresholds=pixel,
        max_pixels=512 * 512,
        seed=0,
    )
    stats.meta["supernet"] = hashlib.sha256(b"bench random supernet").hexdigest()
    save_stats(stats, folder / "stats.npz")
    save_costs(random_costs(stats, unit="gflops"), folder / "costs.json")
    positions = list(dict.fromkeys(e["position"] for e in stats.exits))
    parts: dict[str, str] = {f"segment/{p}": "segment" for p in positions}
    parts["segment/final"] = "segment"
    parts.update({head_part(e["id"]): "head" for e in stats.exits})
    for p in positions:
        parts[upsample_part(p)] = "upsample"
        parts[policy_part(p)] = "policy"
    parts["head/final"] = "final_head"
    files: dict[str, Any] = {"parts/" + n.replace("/", "__") + ".onnx": _identity(n) for n in parts}
    files["stats.npz"] = folder / "stats.npz"
    files["costs.json"] = folder / "costs.json"

    def sha(member: str) -> str:
        value = files[member]
        data = value.read_bytes() if isinstance(value, Path) else value
        return hashlib.sha256(data).hexdigest()

    manifest = {
        "format": "mess-bundle",
        "version": 1,
        "name": "bench-search",
        "supernet": stats.meta["supernet"],
        "source": {"model": "bench:random"},
        "num_classes": args.classes,
        "class_names": list(stats.meta["class_names"]),
        "ignore_index": 255,
        "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "input_size": [16, 16],
        "positions": [{"name": p, "channels": 8, "stride": 4} for p in positions],
        "exits": list(stats.exits),
        "parts": {
            n: {
                "path": "parts/" + n.replace("/", "__") + ".onnx",
                "sha256": sha("parts/" + n.replace("/", "__") + ".onnx"),
                "kind": k,
            }
            for n, k in parts.items()
        },
        "stats": {"path": "stats.npz", "sha256": sha("stats.npz")},
        "costs": {"path": "costs.json", "sha256": sha("costs.json")},
    }
    write_bundle(folder / "search.mess", manifest, files)
    return folder / "search.mess", stats


def start_worker(
    env: dict[str, str], log: Path, search_threads: int | None = None
) -> subprocess.Popen[bytes]:
    """One ``mess worker`` process (one search thread; the search uses every core, or
    ``search_threads`` of them)."""
    cores = {} if search_threads is None else {"MESS_SEARCH_THREADS": str(search_threads)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mess", "worker", "--threads", "1"],
            env={**env, "MESS_LOG_LEVEL": "INFO", **cores},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


class _Search:
    """The big supernet on the server, with one profiled device per phase."""

    def __init__(self, url: str, h: dict, folder: Path, args: argparse.Namespace) -> None:
        self.url, self.h = url, h
        self.options = {"max_exits": args.max_exits, "truncation": args.truncation}
        bundle, self.stats = random_bundle(folder, args)
        with bundle.open("rb") as fh:
            r = httpx.post(
                f"{url}/v1/supernets", headers=h, timeout=1800, files={"bundle": ("s.mess", fh)}
            )
        r.raise_for_status()
        self.sid = r.json()["id"]

    def queue(self, device: str, seed: int) -> int:
        httpx.post(f"{self.url}/v1/devices", headers=self.h, json={"name": device})
        costs = json.loads(json.dumps(random_costs(self.stats, unit="ms", seed=seed).to_json()))
        body = {"supernet_id": self.sid, "device": device, "costs": costs}
        httpx.post(
            f"{self.url}/v1/profiles", headers=self.h, json=body, timeout=120
        ).raise_for_status()
        body = {"supernet_id": self.sid, "device": device, "objective": "pareto", **self.options}
        r = httpx.post(
            f"{self.url}/v1/search", headers=self.h, json={**body, "wait_seconds": 0}, timeout=120
        )
        assert r.status_code == 202, r.text
        return int(r.json()["search_id"])

    def status(self, search_id: int) -> dict:
        r = httpx.get(f"{self.url}/v1/searches/{search_id}", headers=self.h, timeout=60)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def wait(self, search_id: int, until: Callable[[dict], bool], poll: float = 0.5) -> dict:
        while True:
            row = self.status(search_id)
            if row["status"] == "failed":
                raise SystemExit(f"the search failed: {row['error']}")
            if until(row):
                return row
            time.sleep(poll)


Load = Callable[[threading.Event | None, float | None], dict]


def during_search(url: str, h: dict, load: Load, args: argparse.Namespace) -> dict:
    """The three phases; the rows to print and store.

    ``load(stop, seconds)`` runs the query load until ``stop`` is set, or for ``seconds``
    (None: ``--seconds``) when it cannot be stopped."""
    quiet = load(None, None)
    print(
        f"queries alone: p50 {quiet['p50_ms']:.1f} ms, p99 {quiet['p99_ms']:.1f} ms",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="mess-search-load-") as tmp:
        search = _Search(url, h, Path(tmp), args)
    start = time.perf_counter()
    alone_id = search.queue("big-alone", seed=1)
    alone = search.wait(alone_id, lambda r: r["status"] == "done")
    alone_wall = time.perf_counter() - start
    print(f"search alone: {alone['seconds']:.1f} s", file=sys.stderr)
    loaded_id = search.queue("big-loaded", seed=2)
    search.wait(loaded_id, lambda r: r["status"] != "queued", poll=0.05)
    stop = threading.Event()
    result: dict[str, Any] = {}

    def watch() -> None:
        result["row"] = search.wait(loaded_id, lambda r: r["status"] == "done", poll=1.0)
        stop.set()

    watcher = threading.Thread(target=watch)
    start = time.perf_counter()
    watcher.start()
    busy = load(stop, alone["seconds"])
    # the load covered the search only: it ran until stopped, or the search outlasted it
    within = bool(busy.get("until_stopped")) or not stop.is_set()
    watcher.join()
    loaded_wall = time.perf_counter() - start
    return {
        "queries_alone": quiet,
        "queries_during_search": busy,
        "search_alone_s": alone["seconds"],
        "search_alone_wall_s": alone_wall,
        "search_under_load_s": result["row"]["seconds"],
        "search_under_load_wall_s": loaded_wall,
        "configs_in_space": alone["configs_evaluated"],
        "search_threads": args.search_threads,
        "load_within_search": within,
        "goal_p99_ms": 50.0,
        "goal_met": busy["p99_ms"] <= 50.0,
    }
