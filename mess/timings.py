"""Raw per-part timings (what ``mess-agent`` uploads) turned into a ``mess-costs`` v1 table.

Torch-free and service-free: the server computes profiles with it, and the benchmarks
profile in-process with the same arithmetic.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

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
