"""Search speed: the exact engine against the naive per-configuration evaluator.

Writes random but realistic stats and costs (mess.testing) of the requested size, runs the
exhaustive engine over the whole space (Pareto front, which answers every objective) and
times the naive evaluator (mess.search.evaluate, one configuration at a time) on a random
sample of the same space, then prints configs/s for both, their ratio, the total time and
the peak memory.

The benchmark of record (docs/DESIGN.md, "Search"): 16 positions x 36 heads, up to 3 early exits +
final (no truncation), 5 pixel x 20 image thresholds shared, N = 500, C = 19:

    python -m bench.search --positions 16 --heads 36 --samples 500 --classes 19 --max-exits 3

With ``--devices K`` (K > 1) it also times one fleet search of K random cost tables of the
same space (the first is the one above), next to the single-table search of the first, checks
that each fleet front equals its own single-table front bit for bit (``--check first``: the
first only, which saves K - 1 single searches) and prints a table (devices, seconds, ratio to
one device, configurations/s over all devices, identical) and its JSON line.

With ``--shards N`` (N > 1) it also runs the same search as N shards (``compute_front(...,
shard=Shard(i, N))``), one after the other in this process on the same threads, merges their
fronts (``merge_fronts``), checks the merge equals the unsharded front bit for bit and prints
each shard's configurations and seconds, their sum and maximum against the unsharded time (the
maximum is the wall time N such machines would take), the merge's time, and its JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from mess.costs import load_costs, save_costs
from mess.search import Configuration, ExitRule, Problem, SearchSpace, compute_front
from mess.search.api import compute_fronts, resolve
from mess.search.front import ParetoFront
from mess.search.shards import Shard, merge_fronts
from mess.stats import load_stats, save_stats
from mess.testing import random_costs, random_stats


def _exits_by_position(space: SearchSpace) -> dict[int, list[int]]:
    p = space.problem
    by_pos: dict[int, list[int]] = {}
    for e in space.exits:
        by_pos.setdefault(int(p.position[e]), []).append(e)
    return by_pos


def _random_configuration(
    space: SearchSpace, by_pos: dict[int, list[int]], rng: random.Random
) -> Configuration:
    """A configuration of ``space`` (k >= 1, thresholds shared), drawn at random."""
    p = space.problem
    positions = sorted(by_pos)
    k = rng.randint(1, min(space.max_exits, len(positions)))
    chosen = sorted(rng.sample(positions, k))
    tp = rng.choice(p.pixel_thresholds)
    ti = rng.choice(space.image_thresholds)
    rules = tuple(ExitRule(p.exit_ids[rng.choice(by_pos[q])], tp, ti) for q in chosen)
    return Configuration(rules, "final")


def _gpu(device: str) -> dict | None:
    """The GPU's name and the engine's peak GPU memory (None on the CPU)."""
    if device != "cuda":
        return None
    import torch

    return {
        "name": torch.cuda.get_device_name(),
        "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }


FRONT_ARRAYS = ("exp", "worst", "miou", "p90", "ranks", "counts")


def _identical(a: ParetoFront, b: ParetoFront) -> bool:
    """Bit for bit on the stored arrays, and the same header."""
    same = all(getattr(a, k).tobytes() == getattr(b, k).tobytes() for k in FRONT_ARRAYS)
    return same and a.space == b.space and a.reference_miou == b.reference_miou


def _fleet(args: argparse.Namespace, stats, costs, first: ParetoFront, seconds: float, run) -> dict:
    """Time one fleet search of ``args.devices`` tables (``costs`` first) against the single
    search of ``costs`` (``first``, ``seconds``) and check its fronts."""
    tables = [costs] + [random_costs(stats, seed=i) for i in range(1, args.devices)]
    t0 = time.perf_counter()
    fronts = run(compute_fronts, tables)
    fleet_seconds = time.perf_counter() - t0
    print(f"fleet of {args.devices} in {fleet_seconds:,.1f} s", file=sys.stderr, flush=True)
    checked = [_identical(fronts[0], first)]
    if args.check == "all":
        for table, front in zip(tables[1:], fronts[1:], strict=True):
            checked.append(_identical(front, run(compute_front, table)))
    total = first.configs_evaluated
    return {
        "devices": args.devices,
        "single_seconds": round(seconds, 2),
        "fleet_seconds": round(fleet_seconds, 2),
        "fleet_ratio": fleet_seconds / seconds,
        "single_configs_per_s": total / seconds,
        "fleet_configs_per_s": total * args.devices / fleet_seconds,
        "fronts_checked": len(checked),
        "identical": all(checked),
    }


def _print_fleet(out: dict) -> None:
    rows = [
        (
            "devices",
            "seconds",
            "ratio to one device",
            "configurations/s (all devices)",
            "identical",
        ),
        ("1", f"{out['single_seconds']:,.2f}", "1.00", f"{out['single_configs_per_s']:,.0f}", "-"),
        (
            str(out["devices"]),
            f"{out['fleet_seconds']:,.2f}",
            f"{out['fleet_ratio']:.2f}",
            f"{out['fleet_configs_per_s']:,.0f}",
            f"{'yes' if out['identical'] else 'NO'} ({out['fronts_checked']} checked)",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for r in rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(r, widths, strict=True)))
    print(json.dumps(out))


def _sharded(args: argparse.Namespace, whole: ParetoFront, seconds: float, run) -> dict:
    """Time the search as ``args.shards`` shards against the unsharded one (``whole``,
    ``seconds``), merge them and check the merge."""
    parts, times = [], []
    for i in range(args.shards):
        t0 = time.perf_counter()
        parts.append(run(Shard(i, args.shards)))
        times.append(time.perf_counter() - t0)
        print(
            f"shard {i}/{args.shards}: {parts[-1].configs_evaluated:,} configurations in "
            f"{times[-1]:,.1f} s",
            file=sys.stderr,
            flush=True,
        )
    t0 = time.perf_counter()
    merged = merge_fronts(parts)
    merge_seconds = time.perf_counter() - t0
    return {
        "shards": args.shards,
        "unsharded_seconds": round(seconds, 2),
        "shard_seconds": [round(t, 2) for t in times],
        "shard_configurations": [p.configs_evaluated for p in parts],
        "sum_seconds": round(sum(times), 2),
        "max_seconds": round(max(times), 2),
        "sum_ratio": sum(times) / seconds,
        "max_ratio": max(times) / seconds,
        "merge_seconds": round(merge_seconds, 3),
        "identical": _identical(merged, whole)
        and merged.configs_evaluated == whole.configs_evaluated,
    }


def _print_sharded(out: dict) -> None:
    rows = [("run", "configurations", "seconds", "ratio to unsharded")]
    total = sum(out["shard_configurations"])
    rows.append(("unsharded", f"{total:,}", f"{out['unsharded_seconds']:,.2f}", "1.00"))
    for i, (n, t) in enumerate(zip(out["shard_configurations"], out["shard_seconds"], strict=True)):
        rows.append(
            (
                f"shard {i}/{out['shards']}",
                f"{n:,}",
                f"{t:,.2f}",
                f"{t / out['unsharded_seconds']:.2f}",
            )
        )
    rows.append(
        ("shards, sum", f"{total:,}", f"{out['sum_seconds']:,.2f}", f"{out['sum_ratio']:.2f}")
    )
    rows.append(("shards, max", "", f"{out['max_seconds']:,.2f}", f"{out['max_ratio']:.2f}"))
    rows.append(("merge", "", f"{out['merge_seconds']:,.3f}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for r in rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(r, widths, strict=True)))
    print(f"merged front identical to the unsharded one: {'yes' if out['identical'] else 'NO'}")
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--positions", type=int, default=16)
    ap.add_argument("--heads", type=int, default=36)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--max-exits", type=int, default=3)
    ap.add_argument("--pixel-thresholds", type=int, default=5)
    ap.add_argument("--truncation", action="store_true", help="also early-exit terminals")
    ap.add_argument("--threads", type=int, default=None, help="engine threads (default: cores)")
    ap.add_argument("--backend", default="auto", help="auto, numba, numpy or torch")
    ap.add_argument("--device", default="auto", help="auto (CUDA when torch sees a GPU), cpu, cuda")
    ap.add_argument("--naive-seconds", type=float, default=5.0, help="time for the naive sample")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--devices", type=int, default=1, help="cost tables of a fleet search")
    ap.add_argument("--check", choices=("all", "first"), default="all", help="fleet fronts checked")
    ap.add_argument("--shards", type=int, default=1, help="also run the search as N shards")
    args = ap.parse_args()

    pixel = [round(0.5 + 0.1 * i, 2) for i in range(args.pixel_thresholds)]
    # Progress goes to stderr as each phase ends (stdout: the result alone), so that a run
    # stopped by a time limit still tells how far it got and how fast.
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stats = random_stats(
            num_samples=args.samples,
            num_classes=args.classes,
            positions=args.positions,
            heads=args.heads,
            pixel_thresholds=pixel,
            max_pixels=512 * 512,
            seed=0,
        )
        save_stats(stats, Path(tmp) / "stats.npz")
        save_costs(random_costs(stats, seed=0), Path(tmp) / "costs.json")
        stats = load_stats(Path(tmp) / "stats.npz")
        costs = load_costs(Path(tmp) / "costs.json")

    options = {"max_exits": args.max_exits, "truncation": args.truncation}
    space = SearchSpace(Problem(stats, costs), **options)
    total = space.size()
    print(
        f"stats and costs ready in {time.perf_counter() - begin:.1f} s; {total:,} configurations",
        file=sys.stderr,
        flush=True,
    )

    # naive: one configuration at a time, on a random sample of the space
    rng = random.Random(0)
    drawn = time.perf_counter()
    by_pos = _exits_by_position(space)  # once: per draw it cost more than the draw itself
    sample = [_random_configuration(space, by_pos, rng) for _ in range(200_000)]
    t0 = time.perf_counter()
    done = 0
    while done < len(sample) and time.perf_counter() - t0 < args.naive_seconds:
        space.problem.evaluate(sample[done])
        done += 1
    naive_rate = done / (time.perf_counter() - t0)
    print(
        f"naive sample of {len(sample):,} drawn in {t0 - drawn:.1f} s; "
        f"naive evaluate(): {naive_rate:,.0f} configs/s",
        file=sys.stderr,
        flush=True,
    )

    device, backend = resolve(args.device, args.backend)
    if args.devices > 1 or args.shards > 1:  # compile (or load) the kernel before timing
        compute_front(stats, costs, backend=backend, device=device, max_exits=1)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    last = [t0]

    def progress(d: int, t: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 10:
            elapsed = now - t0  # the engine's own time
            print(f"  {d / t:6.1%} of {t:,} configurations in {elapsed:,.0f} s", file=sys.stderr)
            last[0] = now

    front = compute_front(
        stats,
        costs,
        backend=backend,
        device=device,
        progress=progress,
        threads=args.threads,
        **options,
    )
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - cpu0
    engine_rate = total / seconds
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "positions": args.positions,
        "heads": args.heads,
        "exits": len(space.exits),
        "samples": args.samples,
        "classes": args.classes,
        "max_exits": args.max_exits,
        "pixel_thresholds": len(pixel),
        "image_thresholds": space.num_ti,
        "truncation": args.truncation,
        "configurations": total,
        "backend": backend,
        "device": device,
        "threads": args.threads or len(os.sched_getaffinity(0)),
        "engine_seconds": round(seconds, 2),
        "engine_configs_per_s": engine_rate,
        "engine_cpu_seconds": round(cpu_seconds, 2),
        "engine_configs_per_cpu_s": total / cpu_seconds,
        "naive_configs_per_s": naive_rate,
        "naive_sampled": done,
        "speedup": engine_rate / naive_rate,
        "front_points": len(front),
        "front_2d_points": len(front.front_2d()),
        "naive_estimate_s": total / naive_rate,
        "peak_rss_mib": round(peak_mib, 1),
        "gpu": _gpu(device),
        "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
    }
    fleet = None
    if args.devices > 1:

        def run(fn, tables):
            kw = {"backend": backend, "device": device, "threads": args.threads, **options}
            return fn(stats, tables, **kw)

        fleet = _fleet(args, stats, costs, front, seconds, run)
        out["fleet"] = fleet
    sharded = None
    if args.shards > 1:

        def run_shard(shard: Shard) -> ParetoFront:
            kw = {"backend": backend, "device": device, "threads": args.threads, **options}
            return compute_front(stats, costs, shard=shard, **kw)

        sharded = _sharded(args, front, seconds, run_shard)
        out["sharded"] = sharded
    if args.json:
        print(json.dumps(out))
        return
    rows = [
        (
            "space",
            f"{out['exits']} exits ({args.positions} positions x {args.heads} heads), "
            f"k <= {args.max_exits}, {len(pixel)} x {space.num_ti} thresholds, N={args.samples}, "
            f"C={args.classes}, truncation {'on' if args.truncation else 'off'}",
        ),
        ("configurations", f"{total:,}"),
        (
            "engine",
            f"{engine_rate:,.0f} configs/s ({backend} on {device}, {out['threads']} threads), "
            f"{seconds:,.1f} s total",
        ),
        (
            "engine CPU time",
            f"{cpu_seconds:,.1f} s, {total / cpu_seconds:,.0f} configs per CPU-second "
            "(on idle cores the wall time is about CPU time / threads)",
        ),
        (
            "naive evaluate()",
            f"{naive_rate:,.0f} configs/s ({done:,} sampled); whole space "
            f"would take {out['naive_estimate_s'] / 3600:,.1f} h",
        ),
        ("ratio", f"{out['speedup']:,.0f}x"),
        ("front", f"{out['front_points']} points (3-D), {out['front_2d_points']} (2-D)"),
        ("peak memory", f"{peak_mib:,.0f} MiB (max RSS)"),
        ("load average", " ".join(f"{x:.2f}" for x in out["load_average"])),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if fleet is not None:
        _print_fleet(fleet)
    if sharded is not None:
        _print_sharded(sharded)


if __name__ == "__main__":
    main()
