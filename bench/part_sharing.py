"""Timing each distinct computation once: is it sound, and what does it save?

The agent groups a bundle's parts by the signature of their computation without weight values
(:func:`mess.onnx.signature.part_signature`) and times one part per group. Two measurements:

1. soundness: for a sample of groups, every sampled member is timed on its own, interleaved
   with the others over several rounds (a fresh warm-up and the agent's adaptive protocol each
   time); the members' medians should agree within the noise of one part's median from round
   to round;
2. savings: the whole bundle profiled as the agent does, with and without sharing, with the
   fixed protocol (``quick-fixed``: 64 runs and 1 s at least) and the adaptive one (``quick``:
   until the median's 95 % interval is within +-2 %, 16 runs at least, 2 s at most): parts,
   parts timed, seconds, the precision reached, and how far each part's median lands from the
   reference profile (no sharing, fixed protocol).

The bundle: ResNet-18 (8 classes, output stride 8) with the first ``small`` preset's space (5
heads x 8 positions, ``SPACE``) at 128x128, random init, its parts exported with the library
(no calibration needed to time).

    python -m bench.part_sharing [--size 128] [--rounds 5] [--groups 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mess.onnx.signature import part_signature
from profilers.measure import (
    device_attributes,
    make_session,
    measure_parts,
    measurement_report,
    random_inputs,
    time_session,
)

# (label, share, tier); the first is the reference, the last repeats it: how far two profiles
# of the same kind land apart on this machine, at this load
SETTINGS = (
    ("every part, fixed", False, "quick-fixed"),
    ("shared, fixed", True, "quick-fixed"),
    ("every part, adaptive", False, "quick"),
    ("shared, adaptive", True, "quick"),
    ("every part, fixed, again", False, "quick-fixed"),
)


# The head space the measurements in bench/RESULTS.md were taken with (the first small preset's).
SPACE = "crm0-b0-rdi0-fcn,crm1-b0-rdi0-fcn,crm1-b1-rdi1-fcn,crm1-b0-rdi0-dlv3,crm0-b2-rdi1-dlv3"


def export_small_parts(size: int) -> dict[str, bytes]:
    """The parts of a random-init ResNet-18 supernet with :data:`SPACE`."""
    import torch

    from mess.nn import build_model, to_supernet
    from mess.nn.export import export_parts

    torch.manual_seed(0)
    model = build_model("torchvision:resnet18", num_classes=8, output_stride=8)
    supernet = to_supernet(model, space=SPACE)
    parts = export_parts(supernet, (size, size), [0.5, 0.7, 0.9], check=False)
    return {part.name: part.model for part in parts}


def groups_by_signature(parts: Mapping[str, bytes]) -> dict[str, list[str]]:
    """Part names by signature, in name order."""
    groups: dict[str, list[str]] = {}
    for name in sorted(parts):
        groups.setdefault(part_signature(parts[name]), []).append(name)
    return groups


def sample_groups(
    groups: Mapping[str, list[str]], count: int, members: int, seed: int
) -> list[list[str]]:
    """Up to ``count`` (0: all) shared groups, kinds in turn (head, policy, upsample, ...);
    up to ``members`` parts of each."""
    rng = random.Random(seed)
    shared = [names for names in groups.values() if len(names) > 1]
    rng.shuffle(shared)
    by_kind: dict[str, list[list[str]]] = {}
    for names in shared:
        by_kind.setdefault(names[0].split("/")[0], []).append(names)
    chosen: list[list[str]] = []
    count = count or len(shared)
    while len(chosen) < count and any(by_kind.values()):
        for kind in sorted(by_kind):
            if by_kind[kind] and len(chosen) < count:
                chosen.append(by_kind[kind].pop())
    return [sorted(rng.sample(names, min(members, len(names)))) for names in chosen]


def soundness(
    parts: Mapping[str, bytes], groups: Sequence[Sequence[str]], *, rounds: int, tier: str
) -> list[dict[str, Any]]:
    """Each member of each group timed alone, interleaved in a new random order every round.

    Returns per group: the members' medians (median over rounds of each round's median), the
    spread between members and the noise: the largest spread of one member's round medians.
    """
    names = [name for group in groups for name in group]
    sessions = {name: make_session(parts[name]) for name in names}
    feeds = {name: random_inputs(sessions[name], seed=i) for i, name in enumerate(names)}
    medians: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(0)
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        for name in order:
            timing = time_session(sessions[name], feeds[name], tier=tier, name=name)
            medians[name].append(timing.median)
    rows = []
    for group in groups:
        centre = {name: statistics.median(medians[name]) for name in group}
        low, high = min(centre.values()), max(centre.values())
        noise = max((max(medians[n]) - min(medians[n])) / centre[n] for n in group)
        rows.append(
            {
                "parts": list(group),
                "median_ms": centre,
                "round_medians_ms": {n: medians[n] for n in group},
                "spread_pct": 100 * (high - low) / statistics.mean(centre.values()),
                "noise_pct": 100 * noise,
            }
        )
    return rows


def profiling(
    parts: Mapping[str, bytes],
    *,
    seed: int,
    settings: Sequence[tuple[str, bool, str]] = SETTINGS,
) -> list[dict[str, Any]]:
    """The bundle profiled as the agent does, in each of ``settings`` (one after the other)."""
    rows = []
    reference: dict[str, float] = {}
    for label, share, tier in settings:
        start = time.perf_counter()
        timings = measure_parts(parts, tier=tier, share=share, seed=seed)
        seconds = time.perf_counter() - start
        timed = [t for t in timings.values() if t.shared_from is None]
        report = measurement_report(timings)
        halfwidths = [
            report["precision"][t.name]["halfwidth_pct"]
            for t in timed
            if report["precision"][t.name]["halfwidth_pct"] is not None
        ]
        medians = {name: t.median for name, t in timings.items()}
        if not reference:
            reference = medians
        deviation = [abs(medians[n] / reference[n] - 1) for n in parts]
        rows.append(
            {
                "setting": label,
                "share": share,
                "tier": tier,
                "parts": len(timings),
                "timed": len(timed),
                "seconds": seconds,
                "runs": sum(len(t.samples_ms) for t in timed),
                "halfwidth_pct_median": statistics.median(halfwidths),
                "halfwidth_pct_max": max(halfwidths),
                "deviation_pct_median": 100 * statistics.median(deviation),
                "deviation_pct_max": 100 * max(deviation),
                "sum_ms": sum(medians.values()),
                "medians_ms": medians,
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="input size (square)")
    parser.add_argument("--rounds", type=int, default=5, help="soundness: rounds per part")
    parser.add_argument("--groups", type=int, default=0, help="soundness: groups (0: all shared)")
    parser.add_argument("--members", type=int, default=3, help="soundness: parts per group")
    parser.add_argument("--tier", default="quick", help="soundness: protocol of each timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here (per part too)")
    args = parser.parse_args(argv)
    console = Console(width=140)
    attrs = device_attributes()
    console.print(f"{attrs['cpu']}, {attrs['cores']} cores, onnxruntime {attrs['runtime_version']}")
    start = time.perf_counter()
    parts = export_small_parts(args.size)
    groups = groups_by_signature(parts)
    console.print(
        f"{len(parts)} parts, {len(groups)} signatures at {args.size}x{args.size} "
        f"(exported in {time.perf_counter() - start:.1f} s)"
    )
    kinds = Table(title="parts and signatures by kind")
    for column in ("kind", "parts", "signatures"):
        kinds.add_column(column, justify="left" if column == "kind" else "right")
    for kind in sorted({name.split("/")[0] for name in parts}):
        count = sum(name.split("/")[0] == kind for name in parts)
        distinct = sum(names[0].split("/")[0] == kind for names in groups.values())
        kinds.add_row(kind, str(count), str(distinct))
    console.print(kinds)

    sample = sample_groups(groups, args.groups, args.members, args.seed)
    start = time.perf_counter()
    sound = soundness(parts, sample, rounds=args.rounds, tier=args.tier)
    sound_seconds = time.perf_counter() - start
    table = Table(
        title=f"soundness: members of one signature timed apart, interleaved, {args.rounds} "
        f"rounds ({args.tier}; {sound_seconds:.0f} s)"
    )
    for column in ("parts", "median ms each", "spread between parts", "noise of one part"):
        table.add_column(column, justify="left" if column == "parts" else "right")
    for row in sound:
        first, others = row["parts"][0], len(row["parts"]) - 1
        table.add_row(
            f"{first} (+{others})",
            " / ".join(f"{row['median_ms'][n]:.3f}" for n in row["parts"]),
            f"{row['spread_pct']:.1f} %",
            f"{row['noise_pct']:.1f} %",
        )
    console.print(table)
    within = sum(row["spread_pct"] <= row["noise_pct"] for row in sound)
    spreads = sorted(row["spread_pct"] for row in sound)
    console.print(
        f"{within} of {len(sound)} groups: parts apart by no more than one part's own noise; "
        f"spread between parts median {statistics.median(spreads):.1f} %, max {spreads[-1]:.1f} %"
    )

    runs = profiling(parts, seed=args.seed)
    table = Table(title="profiling the whole bundle (one thread, warm)")
    columns = (
        "setting",
        "tier",
        "parts",
        "timed",
        "seconds",
        "runs",
        "precision median / max",
        "part medians vs first row, median / max",
        "sum of medians ms",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "setting" else "right")
    for row in runs:
        table.add_row(
            row["setting"],
            row["tier"],
            str(row["parts"]),
            str(row["timed"]),
            f"{row['seconds']:.1f}",
            str(row["runs"]),
            f"+-{row['halfwidth_pct_median']:.1f} % / +-{row['halfwidth_pct_max']:.1f} %",
            f"{row['deviation_pct_median']:.1f} % / {row['deviation_pct_max']:.1f} %",
            f"{row['sum_ms']:.2f}",
        )
    console.print(table)
    if args.json:
        result = {
            "device": attrs,
            "size": args.size,
            "parts": len(parts),
            "signatures": len(groups),
            "soundness": sound,
            "profiling": runs,
        }
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
