"""Latency of tailored models vs the original network in onnxruntime, and the error of the
cost table's prediction.

Pipeline: supernet (random init, or ``--supernet`` trained) -> calibration on mess-synth ->
bundle -> every part timed with the agent's protocol (``profilers.measure``) -> cost table
(median per part, as the service computes it) -> exact Pareto front -> a few configurations
along it assembled and run on the test split (batch 1, one thread), each image deciding its
own exit. Prints predicted expected latency (calibration split) vs measured mean latency (test
split) and the speed-up over the original network measured in the same run. The parts are
timed twice, warm (the agent's default: each part over and over) and cold (``mess-agent
--cold-cache``: the CPU caches flushed before each run); the front comes from the warm table,
and both predictions are shown.

    python -m bench.latency [--supernet trained.pt] [--size 64] [--images 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--supernet", type=Path, help="trained supernet (default: random init)")
    parser.add_argument("--model", default="torchvision:resnet18")
    parser.add_argument("--num-classes", type=int, default=8)
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=100, help="calibration and test images")
    parser.add_argument("--tier", default="quick")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import onnx
    import torch

    from mess.bundle import Manifest
    from mess.costs import parse_costs
    from mess.data import build_dataset
    from mess.evaluate import evaluate_model
    from mess.nn import build_model, load_supernet, to_supernet
    from mess.nn.export import export_bundle
    from mess.onnx import PartsIndex, assemble_model
    from mess.pipeline import calibrate_supernet
    from mess.search import Configuration, compute_front, evaluate
    from mess.stats import load_stats
    from mess.timings import costs_from_timings
    from profilers.measure import measure_parts

    console = Console(width=140)
    size = (args.size, args.size)
    with tempfile.TemporaryDirectory(prefix="mess-latency-") as tmp_name:
        tmp = Path(tmp_name)
        if args.supernet:
            sn_path = args.supernet
        else:
            torch.manual_seed(0)
            model = build_model(args.model, num_classes=args.num_classes, output_stride=16)
            sn_path = tmp / "sn.pt"
            to_supernet(model, space=args.space).save(sn_path)
        sn = load_supernet(sn_path).eval()
        data = f"synth:{sn.num_classes}"
        calibrate_supernet(
            supernet=sn_path, data=data, output=tmp / "stats.npz", size=size, length=args.images
        )
        stats = load_stats(tmp / "stats.npz")
        bundle = tmp / "bench.mess"
        manifest = export_bundle(sn, tmp / "stats.npz", size, bundle, check=False)
        with zipfile.ZipFile(bundle) as zf:
            blobs = {n: zf.read(ref["path"]) for n, ref in manifest["parts"].items()}
        protos = {n: onnx.load_from_string(b) for n, b in blobs.items()}
        console.print(f"timing {len(blobs)} parts cold and warm ({args.tier} tier, 1 thread)...")
        tables = {}
        for mode in ("cold", "warm"):
            timings = measure_parts(blobs, tier=args.tier, cold=mode == "cold")
            tables[mode] = costs_from_timings(
                Manifest.model_validate(manifest), {n: t.samples_ms for n, t in timings.items()}
            )
        costs = tables["warm"]
        cold = parse_costs(tables["cold"])
        front = compute_front(stats, parse_costs(costs), max_exits=2)
        points = front.front_2d()
        chosen = {0, len(points) // 3, 2 * len(points) // 3, len(points) - 1}
        index = PartsIndex.from_manifest(manifest)
        test = build_dataset(data, "test", size=size, length=args.images)
        samples = [(np.asarray(i), np.asarray(m)) for i, m in test]
        rows = []
        configs = [
            (
                "original (final alone)",
                {"exits": [], "terminal": "final"},
                sum(costs["segments"].values()) + costs["heads"]["final"],
            )
        ]
        for i in sorted(chosen):
            p = points[i]
            configs.append(
                (f"front point {i + 1}/{len(points)}", p.configuration.to_json(), p.expected_cost)
            )
        for name, config, predicted in configs:
            model = assemble_model(protos, index, config).SerializeToString()
            result = evaluate_model(model, samples, num_classes=sn.num_classes)
            measured = float(np.mean(result.latency_ms))
            rows.append(
                {
                    "configuration": name,
                    "exits": len(config["exits"]),
                    "terminal": config["terminal"],
                    "predicted_ms": predicted,
                    "predicted_cold_ms": (
                        cold_ms := evaluate(stats, cold, Configuration.from_json(config))
                    ).expected_cost,
                    "measured_mean_ms": measured,
                    "measured_p90_ms": float(np.percentile(result.latency_ms, 90)),
                    "prediction_error": measured / predicted - 1,
                    "prediction_error_cold": measured / cold_ms.expected_cost - 1,
                    "exit_fractions": result.exit_fractions,
                }
            )
    base = rows[0]["measured_mean_ms"]
    table = Table(
        title=f"tailored models vs the original, onnxruntime CPU, {args.size}x"
        f"{args.size}, {platform.processor() or platform.machine()}"
    )
    for col in (
        "configuration",
        "early exits",
        "terminal",
        "predicted ms, warm parts",
        "predicted ms, cold parts",
        "measured mean ms (test)",
        "p90 ms",
        "error, warm",
        "error, cold",
        "speed-up",
    ):
        table.add_column(col)
    for r in rows:
        r["speedup"] = base / r["measured_mean_ms"]
        table.add_row(
            r["configuration"],
            str(r["exits"]),
            r["terminal"],
            f"{r['predicted_ms']:.3f}",
            f"{r['predicted_cold_ms']:.3f}",
            f"{r['measured_mean_ms']:.3f}",
            f"{r['measured_p90_ms']:.3f}",
            f"{100 * r['prediction_error']:+.1f}%",
            f"{100 * r['prediction_error_cold']:+.1f}%",
            f"{r['speedup']:.2f}x",
        )
    console.print(table)
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
