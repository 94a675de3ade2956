"""Raw per-part timings (what ``mess-agent`` uploads) turned into a ``mess-costs`` v1 table,
and the agent's report on their precision summed up.

Torch-free and service-free: the server computes profiles with it, and the benchmarks
profile in-process with the same arithmetic.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np

from mess.bundle import Manifest, head_part, policy_part, segment_part, upsample_part
from mess.costs import CostsError
from mess.space import FINAL


def costs_from_timings(manifest: Manifest, timings: dict[str, list[float]]) -> dict[str, Any]:
    """The ``mess-costs`` v1 table (ms, median) from raw per-part timings.

    An early exit's head cost includes its upsampling to the input size (paid only when the
    image leaves there; a small overestimate for exits passed by); its policy cost is the
    position's policy part.

    Raises:
        CostsError: a part of the manifest has no timings, or its timings are empty,
            negative or not finite.
    """
    missing = sorted(set(manifest.parts) - set(timings))
    if missing:
        raise CostsError(f"no timings for part {missing[0]!r}")
    bad = [n for n, v in timings.items() if not v or not all(map(math.isfinite, v)) or min(v) < 0]
    if bad:
        raise CostsError(f"timings of part {bad[0]!r} are empty, negative or not finite")

    def med(name: str) -> float:
        return float(statistics.median(timings[name]))

    segments = {p: med(segment_part(p)) for p in [*(p.name for p in manifest.positions), FINAL]}
    heads = {e.id: med(head_part(e.id)) + med(upsample_part(e.position)) for e in manifest.exits}
    heads[FINAL] = med(head_part(FINAL))
    policy = {e.id: med(policy_part(e.position)) for e in manifest.exits}
    return {
        "format": "mess-costs",
        "version": 1,
        "unit": "ms",
        "statistic": "median",
        "segments": segments,
        "heads": heads,
        "policy": policy,
    }


def precision_summary(context: dict[str, Any]) -> dict[str, Any]:
    """How precisely a profile knows each computation it timed, from the agent's report in
    its context: one part per signature (the others share its runs), the 95 % interval
    half-width of each median in %, and how many are within the tier's target; with the
    device's own drift over the profile where the agent probed it (``speed``).

    A context is what an agent sent: entries of another shape are left out, not an error.
    """
    precision = context.get("precision")
    precision = precision if isinstance(precision, dict) else {}
    signatures = context.get("signatures")
    if isinstance(signatures, dict) and signatures:
        timed = [names[0] for names in signatures.values() if isinstance(names, list) and names]
    else:
        timed = list(precision)
    reports = [r for n in timed if isinstance(r := precision.get(n), dict)]
    widths = sorted(
        float(w) for r in reports if isinstance(w := r.get("halfwidth_pct"), int | float)
    )
    out: dict[str, Any] = {"timed": len(timed)}
    speed = context.get("speed")
    if isinstance(speed, dict) and isinstance(speed.get("spread_pct"), int | float):
        out["speed_probes"] = len(speed.get("medians_ms") or [])
        out["speed_spread_pct"] = speed["spread_pct"]
    if not widths:
        return out
    out |= {
        "timed_runs": sum(r["runs"] for r in reports if isinstance(r.get("runs"), int)),
        "halfwidth_median_pct": round(statistics.median(widths), 2),
        "halfwidth_p90_pct": round(float(np.percentile(widths, 90)), 2),
        "halfwidth_max_pct": round(widths[-1], 2),
    }
    rule = context.get("rule")
    target = rule.get("target") if isinstance(rule, dict) else None
    if isinstance(target, int | float):
        out["within"] = sum(w <= 100 * target for w in widths)
        out["within_target"] = f"{out['within']}/{len(timed)}"  # as the bench prints it
    return out
