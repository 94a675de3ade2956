"""Verified deployment: does the answer's latency hold on this machine?

On the demo supernet (``mess demo``'s build, reused from ``--workdir``) and this machine: the
service profiles it with a local agent, then for budgets spread over the front (its cheapest
point to 1.2x the original network's predicted latency) every budget is queried twice, as
today (the prediction from the parts) and with ``"verify": true`` (the model timed whole by
the agent, the cost model corrected and the search repeated until the measurement fits).
Every model is downloaded and measured independently (onnxruntime, one thread, batch 1),
in interleaved rounds, on the calibration images whose exit fractions the prediction uses and
on the test split. Prints budget, predicted, verified and measured latency on each split,
and whether the calibration mean breaks the budget, for both modes; the spread of the rounds
is the measurement noise on this machine.

    python -m bench.verify [--workdir mess-demo] [--budgets 8] [--rounds 3] [--json]

A quick check of the plumbing on a bundle already built (a few minutes):

    python -m bench.verify --bundle B.mess --data synth:8 --size 64 --calibration-images 100 \\
        --test-images 20 --budgets 2 --rounds 1 --tier smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

TOLERANCE = 0.03  # the measurement noise the goal allows above a budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("mess-demo"))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--bundle", type=Path, help="an exported bundle (default: the demo's)")
    parser.add_argument("--data", help="its data set (default: the preset's synth)")
    parser.add_argument("--size", type=int, help="its input size (default: the preset's)")
    parser.add_argument("--calibration-images", type=int, help="as calibrated (preset's)")
    parser.add_argument("--test-images", type=int, help="test split images (preset's)")
    parser.add_argument("--budgets", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    parser.add_argument("--tier", default="quick", help="the agent's tier")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from mess.demo import Demo
    from mess.pipeline import PRESETS

    console = Console(width=160, stderr=args.json)
    preset = PRESETS[args.preset]
    args.workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(args.workdir, preset, console)
    bundle = args.bundle
    if bundle is None:
        demo.build()
        bundle = demo.path("supernet.mess")
    data = args.data or preset.data
    size = (args.size, args.size) if args.size else preset.size
    calibration = args.calibration_images or preset.calibration_images
    test = args.test_images or preset.test_images

    with demo.service() as (url, admin):
        queried = _query_all(url, admin, bundle, args, console, demo.path("agent-cache"))
    splits = {
        "calibration": _samples(data, "calibration", size, calibration),
        "test": _samples(data, "test", size, test),
    }
    stats_samples, num_classes = _bundle_info(bundle)
    if stats_samples != calibration:
        console.print(
            f"[yellow]the stats hold {stats_samples} samples, --calibration-images is "
            f"{calibration}: the calibration split measured is not the one predicted from"
        )
    measured, noise = _measure(queried["models"], splits, num_classes, args.rounds, console)
    rows = _rows(queried, measured)
    _print(console, rows, noise, queried)
    if args.json:
        out = {
            "machine": platform.processor() or platform.machine(),
            "noise": noise,
            "rows": rows,
            "original_predicted_ms": queried["original_ms"],
        }
        print(json.dumps(out, indent=1))


def _bundle_info(bundle: Path) -> tuple[int, int]:
    """Calibration samples of the bundle's stats, and its classes."""
    import io
    import zipfile

    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        with np.load(io.BytesIO(zf.read(manifest["stats"]["path"]))) as data:
            return int(data["intersection"].shape[0]), int(manifest["num_classes"])


def _samples(data: str, split: str, size: tuple[int, int], length: int) -> list[Any]:
    from mess.data import build_dataset

    dataset = build_dataset(data, split, size=size, length=length)
    return [(np.asarray(image), np.asarray(mask)) for image, mask in dataset]


def _query_all(
    url: str, admin: str, bundle: Path, args: argparse.Namespace, console: Console, cache: Path
) -> dict[str, Any]:
    """Push, profile, then query every budget plainly and verified; download the models."""
    from mess.client import ClientError, MessClient

    device = f"{socket.gethostname()}-verify"[:60]
    with MessClient(url, admin) as client:
        sid = client.push(bundle)["id"]
        token = client.create_token("agent", "bench-verify")["token"]
    agent = [
        *(sys.executable, "-m", "profilers", "--server", url, "--token", token),
        *("--name", device, "--tier", args.tier, "--threads", "1", "--cache-dir", str(cache)),
    ]
    console.rule("[bold]profile this machine (mess-agent --once)")
    subprocess.run([*agent, "--once"], check=True, capture_output=True)
    # a second agent stays up for the verification jobs
    background = subprocess.Popen(
        [*agent, "--poll-seconds", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with MessClient(url, admin) as client:
            newest = client.get("/v1/profiles", supernet_id=sid, device=device)["items"][0]
            costs = client.get(f"/v1/profiles/{newest['id']}")["costs"]
            original = sum(costs["segments"].values()) + costs["heads"]["final"]
            base = {"supernet_id": sid, "device": device, "objective": "pareto"}
            front = client.search(base)["front"]
            cheapest = min(p["expected_cost"] for p in front)
            budgets = np.linspace(cheapest, 1.2 * original, args.budgets).tolist()
            models: dict[str, bytes] = {}
            results: list[dict[str, Any]] = [{"budget_ms": b} for b in budgets]
            # every plain query first: once a verification has taught the service a
            # correction, plain answers use it too
            for mode, extra in (("plain", {}), ("verified", {"verify": True})):
                for row in results:
                    request = {**base, "objective": "max-accuracy", "budget_ms": row["budget_ms"]}
                    start = time.perf_counter()
                    try:
                        answer = client.search({**request, **extra})
                    except ClientError as exc:
                        row[mode] = {"error": str(exc.body.get("detail", exc))[:200]}
                        continue
                    seconds = time.perf_counter() - start
                    cid = answer["configuration_id"]
                    if cid not in models:
                        path = cache.parent / f"model-{cid[:16]}.onnx"
                        client.download(f"/v1/configurations/{cid}/model.onnx", path)
                        models[cid] = path.read_bytes()
                    verified = answer["verified"] or {}
                    row[mode] = {
                        "configuration_id": cid,
                        # verified: what the search predicted for it before it was measured
                        "predicted_ms": verified.get(
                            "predicted_expected_ms", answer["expected_cost"]
                        ),
                        "verified_ms": verified.get("expected_ms"),
                        "query_seconds": seconds,
                        "exit_fractions": answer["exit_fractions"],
                    }
                    console.print(
                        f"budget {row['budget_ms']:.3f} ms, {mode}: "
                        f"{row[mode]['predicted_ms']:.3f} ms predicted ({seconds:.1f} s)"
                    )
            profile = client.get(f"/v1/profiles/{newest['id']}")
    finally:
        background.terminate()
        background.wait(timeout=60)
    return {
        "rows": results,
        "models": models,
        "original_ms": original,
        "corrections": profile.get("corrections", []),
    }


def _measure(
    models: dict[str, bytes],
    splits: dict[str, list[Any]],
    num_classes: int,
    rounds: int,
    console: Console,
) -> tuple[dict[str, dict[str, float]], float]:
    """Mean latency of each model on each split: the median over interleaved rounds; the
    noise is the median relative half-range of the rounds."""
    from mess.evaluate import evaluate_model

    console.rule(f"[bold]measure {len(models)} models, {rounds} interleaved rounds")
    means: dict[tuple[str, str], list[float]] = {}
    order = list(models)
    for r in range(rounds):
        random.Random(r).shuffle(order)
        for split, samples in splits.items():
            for cid in order:
                summary = evaluate_model(models[cid], samples, num_classes=num_classes)
                means.setdefault((cid, split), []).append(summary.summary()["latency_ms"]["mean"])
    out: dict[str, dict[str, float]] = {}
    spreads = []
    for (cid, split), values in means.items():
        mid = statistics.median(values)
        out.setdefault(cid, {})[split] = mid
        spreads.append((max(values) - min(values)) / 2 / mid)
    return out, float(statistics.median(spreads)) if spreads else 0.0


def _rows(queried: dict[str, Any], measured: dict[str, dict[str, float]]) -> list[dict]:
    rows = []
    for row in queried["rows"]:
        out = {"budget_ms": row["budget_ms"]}
        for mode in ("plain", "verified"):
            got = dict(row.get(mode) or {})
            if "configuration_id" in got:
                m = measured[got["configuration_id"]]
                got["calibration_ms"] = m["calibration"]
                got["test_ms"] = m["test"]
                got["over"] = m["calibration"] / row["budget_ms"] - 1
                got["violation"] = got["over"] > TOLERANCE
                if got.get("verified_ms"):
                    got["verified_error"] = got["verified_ms"] / m["calibration"] - 1
            out[mode] = got
        rows.append(out)
    return rows


def _print(console: Console, rows: list[dict], noise: float, queried: dict[str, Any]) -> None:
    table = Table(
        title="verified deployment (ms; calibration / test: measured mean latency; "
        "ver./cal.: verified expected against the calibration measurement)"
    )
    columns = ("budget", "mode", "predicted", "verified", "ver./cal.", "calibration", "test")
    for name in (*columns, "over"):
        table.add_column(name, justify="right")
    table.add_column("violation")
    table.add_column("query s", justify="right")
    for row in rows:
        for mode in ("plain", "verified"):
            got = row[mode]
            if "error" in got:
                error = got["error"][:70]
                table.add_row(f"{row['budget_ms']:.3f}", mode, "", "", "", "", "", "", error)
                continue
            table.add_row(
                f"{row['budget_ms']:.3f}",
                mode,
                f"{got['predicted_ms']:.3f}",
                f"{got['verified_ms']:.3f}" if got.get("verified_ms") else "-",
                f"{got['verified_error']:+.1%}" if "verified_error" in got else "-",
                f"{got['calibration_ms']:.3f}",
                f"{got['test_ms']:.3f}",
                f"{got['over']:+.1%}",
                "yes" if got["violation"] else "no",
                f"{got['query_seconds']:.1f}",
            )
    console.print(table)
    console.print(
        f"measurement noise (median half-range of the rounds): {noise:.1%}; violation: the "
        f"calibration mean over the budget by more than {TOLERANCE:.0%}; original network "
        f"predicted {queried['original_ms']:.3f} ms; corrections learned: "
        + ", ".join(
            f"v{c['version']} x{c['scale']:.3f} +{c['offset_ms']:.3f} ms"
            for c in queried["corrections"]
        )
    )


if __name__ == "__main__":
    main()
