"""Supernet size and cost of the head space per source model.

Prints, for each model: positions, candidate exits, GFLOPs of the original network at the
input size, total/min/mean/max GFLOPs of the exit heads and their parameters, and peak RSS.

    python -m bench.supernet [--models deeplabv3_resnet50,resnet18] [--size 512x512]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from rich.console import Console
from rich.table import Table

from mess.nn import build_model, part_costs, to_supernet
from mess.space import FINAL


def measure(spec: str, size: tuple[int, int], space: str) -> dict[str, float | int | str]:
    start = time.perf_counter()
    sn = to_supernet(build_model(f"torchvision:{spec}", num_classes=19), space=space)
    costs = part_costs(sn, size)
    heads = [c for k, c in costs["heads"].items() if k != FINAL]
    original = sum(c.gflops for c in costs["segments"].values()) + costs["heads"][FINAL].gflops
    backbone_params = sum(c.params for c in costs["segments"].values())
    return {
        "model": spec,
        "positions": len(sn.positions),
        "exits": len(heads),
        "original_gflops": original,
        "original_params_m": (backbone_params + costs["heads"][FINAL].params) / 1e6,
        "heads_gflops_total": sum(h.gflops for h in heads),
        "heads_gflops_min": min(h.gflops for h in heads),
        "heads_gflops_mean": sum(h.gflops for h in heads) / len(heads),
        "heads_gflops_max": max(h.gflops for h in heads),
        "heads_params_m": sum(h.params for h in heads) / 1e6,
        "heads_fp32_gb": sum(h.params for h in heads) * 4 / 1e9,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--models", default="deeplabv3_resnet50,fcn_resnet50,resnet18,deeplabv3_mobilenet_v3_large"
    )
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--space", default="full")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    rows = [measure(m, (h, w), args.space) for m in args.models.split(",")]
    table = Table(title=f"head space '{args.space}' at {h}x{w}, 19 classes")
    for col in (
        "model",
        "pos.",
        "exits",
        "orig. GFLOPs",
        "orig. params M",
        "heads GFLOPs min/mean/max",
        "heads params M",
        "heads fp32 GB",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["model"]),
            str(r["positions"]),
            str(r["exits"]),
            f"{r['original_gflops']:.1f}",
            f"{r['original_params_m']:.1f}",
            f"{r['heads_gflops_min']:.2f} / {r['heads_gflops_mean']:.2f} / "
            f"{r['heads_gflops_max']:.2f}",
            f"{r['heads_params_m']:.1f}",
            f"{r['heads_fp32_gb']:.2f}",
        )
    Console(width=160).print(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    Console().print(f"peak RSS {peak:.2f} GB")
    if args.json:
        print(json.dumps({"rows": rows, "peak_rss_gb": peak}))


if __name__ == "__main__":
    main()
