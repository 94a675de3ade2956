"""The arithmetic of verification: path costs, measured latency, the cost correction.

Pure functions (no database) so that the hand-computed cases test them directly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mess.costs import parse_costs
from mess.space import FINAL


def path_costs(
    costs: Mapping[str, Any], exit_positions: Mapping[str, str], configuration: Mapping[str, Any]
) -> list[float]:
    """What a cost table predicts for each exit path of a configuration, terminal last.

    The canonical arithmetic of docs/DESIGN.md, "Configurations and their cost": leaving at
    early exit ``i`` costs the backbone to its position plus the head and policy of every
    early exit on the way; the terminal adds its head to the backbone it reaches.
    """
    table = parse_costs(dict(costs))
    hp = 0.0
    out = []
    for rule in configuration.get("exits") or []:
        eid = str(rule["id"])
        hp = (hp + table.heads[eid]) + table.policy[eid]
        out.append(table.reach(exit_positions[eid]) + hp)
    terminal = str(configuration.get("terminal", FINAL))
    reach = table.reach(FINAL if terminal == FINAL else exit_positions[terminal])
    out.append(reach + (hp + table.heads[terminal]))
    return out


@dataclass(frozen=True)
class Latency:
    """A configuration's latency from its path times and exit fractions."""

    expected: float
    worst: float
    p90: float


def combine(paths_ms: Sequence[float], fractions: Sequence[float]) -> Latency:
    """Expected, worst and p90 latency of a configuration from its per-path times.

    - expected: ``sum_k f_k * path_k``, ``f`` the exit fractions on the calibration split;
    - worst: the slowest path (the terminal's, unless noise says otherwise);
    - p90: the time of the path where the fractions, paths sorted by time, first add up to
      0.9: the 90th percentile of per-image latency with images distributed by ``f``.

    Raises:
        ValueError: lengths differ, or the fractions do not sum to 1.
    """
    if len(paths_ms) != len(fractions) or not paths_ms:
        raise ValueError(f"{len(paths_ms)} path times for {len(fractions)} exit fractions")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"exit fractions sum to {sum(fractions)}, not 1")
    expected = math.fsum(f * t for f, t in zip(fractions, paths_ms, strict=True))
    cumulative = 0.0
    p90 = max(paths_ms)
    for t, f in sorted(zip(paths_ms, fractions, strict=True)):
        cumulative += f
        if cumulative >= 0.9 - 1e-12:
            p90 = t
            break
    return Latency(expected=expected, worst=max(paths_ms), p90=p90)


@dataclass(frozen=True)
class Correction:
    """``measured = scale * predicted + offset_ms`` for every path of a device."""

    scale: float
    offset_ms: float

    def apply(self, predicted: float) -> float:
        return self.scale * predicted + self.offset_ms


IDENTITY = Correction(1.0, 0.0)


def fit(predicted: Sequence[float], measured: Sequence[float]) -> Correction:
    """Least squares ``measured ~ scale * predicted + offset`` with ``scale, offset >= 0``.

    The unconstrained fit when it is admissible, else the better of the two boundary fits
    (through the origin; a constant). Paths of one length only (a single path, or all
    equal) cannot separate scale from offset: the fit is then through the origin, a pure
    scale, which is what a uniformly slower device needs.
    """
    if len(predicted) != len(measured) or not predicted:
        raise ValueError("fit needs matching, non-empty samples")
    n = len(predicted)
    mx = math.fsum(predicted) / n
    my = math.fsum(measured) / n
    sxx = math.fsum((x - mx) ** 2 for x in predicted)
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(predicted, measured, strict=True))
    candidates = []
    if sxx > 1e-12 * max(1.0, mx * mx):
        a = sxy / sxx
        b = my - a * mx
        if a >= 0 and b >= 0:
            return Correction(a, b)
    xx = math.fsum(x * x for x in predicted)
    if xx > 0:
        candidates.append(
            Correction(
                max(0.0, math.fsum(x * y for x, y in zip(predicted, measured, strict=True)) / xx),
                0.0,
            )
        )
    if sxx > 1e-12 * max(1.0, mx * mx) or not candidates:
        candidates.append(Correction(0.0, max(0.0, my)))

    def residual(c: Correction) -> float:
        return math.fsum((c.apply(x) - y) ** 2 for x, y in zip(predicted, measured, strict=True))

    return min(candidates, key=residual)


def corrected_costs(costs: Mapping[str, Any], correction: Correction) -> dict[str, Any]:
    """The cost table whose every path costs ``scale * path + offset_ms``: every part times
    ``scale``, and ``offset_ms`` on the first segment, which every path runs."""
    out = copy.deepcopy(dict(costs))
    for section in ("segments", "heads", "policy"):
        out[section] = {k: float(v) * correction.scale for k, v in out[section].items()}
    first = next(iter(out["segments"]))
    out["segments"][first] += correction.offset_ms
    return out


def predicted_exits(
    confidence: Any,
    stats_exits: Sequence[str],
    pixel_thresholds: Sequence[float],
    configuration: Mapping[str, Any],
    indices: Sequence[int],
) -> list[int]:
    """The exit the statistics predict for each sample of ``indices`` (terminal: ``k``).

    A sample leaves at the first early exit whose image score at its pixel threshold is at
    least the image threshold, compared in float32 as the model does (docs/DESIGN.md,
    "Configurations and their cost").
    """
    import numpy as np

    rules = list(configuration.get("exits") or [])
    out = []
    for n in indices:
        taken = len(rules)
        for i, rule in enumerate(rules):
            e = list(stats_exits).index(str(rule["id"]))
            tp = [abs(float(t) - float(rule["pixel_threshold"])) <= 1e-9 for t in pixel_thresholds]
            score = np.float32(confidence[int(n), e, tp.index(True)])
            if score >= np.float32(rule["image_threshold"]):
                taken = i
                break
        out.append(taken)
    return out
