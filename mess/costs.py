"""Cost tables: the ``mess-costs`` v1 file (torch-free).

A table gives the cost of every part of a supernet on one device (milliseconds, a statistic
of measured timings) or without one (GFLOPs)::

    {"format": "mess-costs", "version": 1, "unit": "ms" | "gflops", "statistic": "median",
     "device": {...} | null,
     "segments": {"<position>": c, ..., "final": c},   # depth order, "final" last
     "heads": {"<exit id>": c, ..., "final": c},
     "policy": {"<exit id>": c, ...}}

Reaching position ``p`` costs the segments in file order up to and including ``p``; the
original network (terminal ``final``) costs every segment including ``"final"`` plus
``heads["final"]``. Sums are taken in float64 in file order (:meth:`CostTable.reach`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mess.fileio import atomic_write
from mess.space import FINAL

if TYPE_CHECKING:
    from mess.stats import Stats

FORMAT = "mess-costs"
VERSION = 1
UNITS = ("ms", "gflops")
_KNOWN = {"format", "version", "unit", "statistic", "device", "segments", "heads", "policy"}


class CostsError(ValueError):
    """The cost table is malformed or does not fit the statistics."""


@dataclass
class CostTable:
    """A parsed ``mess-costs`` v1 table; the dicts keep file order.

    Attributes:
        unit: ``"ms"`` or ``"gflops"``.
        statistic: how timings were summarised (``"median"``, ``"exact"`` for GFLOPs, ...).
        device: the device description, ``None`` for GFLOPs.
        segments: backbone segment costs in depth order, ``"final"`` last.
        heads: exit head costs by exit id, ``"final"`` included.
        policy: cost of one exit decision by early exit id.
        extra: other top-level keys of the file (kept when saving).
    """

    unit: str
    statistic: str
    device: dict[str, Any] | None
    segments: dict[str, float]
    heads: dict[str, float]
    policy: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)

    def cumulative(self) -> dict[str, float]:
        """Cost of reaching each segment key: running float64 sums in file order."""
        out: dict[str, float] = {}
        total = 0.0
        for key, value in self.segments.items():
            total += value
            out[key] = total
        return out

    def reach(self, position: str) -> float:
        """Backbone cost of reaching ``position`` (``"final"``: the whole backbone).

        Raises:
            KeyError: unknown position.
        """
        return self.cumulative()[position]

    def original_cost(self) -> float:
        """Cost of the original network: every segment, then the final head."""
        return self.reach(FINAL) + self.heads[FINAL]

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "unit": self.unit,
            "statistic": self.statistic,
            "device": self.device,
            **self.extra,
            "segments": dict(self.segments),
            "heads": dict(self.heads),
            "policy": dict(self.policy),
        }


def _short(value: Any) -> str:
    """``repr`` cut to 40 characters (integers past 4300 digits have no repr at all)."""
    try:
        text = repr(value)
    except ValueError:
        return "an integer too long to print"
    return text if len(text) <= 40 else text[:37] + "..."


def _number_map(raw: dict[str, Any], section: str) -> dict[str, float]:
    value = raw.get(section)
    if not isinstance(value, dict):
        raise CostsError(f"{section} must be an object of costs")
    out: dict[str, float] = {}
    for key, cost in value.items():
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise CostsError(f"{section}[{key!r}] must be a number, got {_short(cost)}")
        try:
            number = float(cost)
        except OverflowError:  # an integer beyond float range (JSON allows any length)
            number = math.inf
        if not math.isfinite(number) or number < 0:
            raise CostsError(f"{section}[{key!r}] must be finite and >= 0, got {_short(cost)}")
        out[str(key)] = number
    return out


def parse_costs(raw: dict[str, Any]) -> CostTable:
    """Parse and validate a ``mess-costs`` v1 JSON object.

    Args:
        raw: the decoded JSON.

    Returns:
        The :class:`CostTable`.

    Raises:
        CostsError: unknown format or version, missing keys, wrong types, negative or
            non-finite costs.
    """
    if not isinstance(raw, dict):
        raise CostsError("a cost table must be a JSON object")
    if raw.get("format") != FORMAT:
        raise CostsError(f"format must be {FORMAT!r}, got {_short(raw.get('format'))}")
    if raw.get("version") != VERSION:
        raise CostsError(f"version {_short(raw.get('version'))} is not supported (only 1)")
    for key in ("unit", "segments", "heads", "policy"):
        if key not in raw:
            raise CostsError(f"missing key {key!r}")
    unit = raw["unit"]
    if unit not in UNITS:
        raise CostsError(f"unit must be one of {UNITS}, got {_short(unit)}")
    statistic = raw.get("statistic", "exact" if unit == "gflops" else "median")
    if not isinstance(statistic, str):
        raise CostsError(f"statistic must be a string, got {_short(statistic)}")
    device = raw.get("device")
    if device is not None and not isinstance(device, dict):
        raise CostsError(f"device must be an object or null, got {_short(device)}")
    table = CostTable(
        unit=unit,
        statistic=statistic,
        device=device,
        segments=_number_map(raw, "segments"),
        heads=_number_map(raw, "heads"),
        policy=_number_map(raw, "policy"),
        extra={k: v for k, v in raw.items() if k not in _KNOWN},
    )
    validate_costs(table)
    return table


def validate_costs(table: CostTable) -> None:
    """Check a :class:`CostTable` built in code.

    Raises:
        CostsError: bad unit, bad types, negative or non-finite costs, ``"final"`` not last.
    """
    if table.unit not in UNITS:
        raise CostsError(f"unit must be one of {UNITS}, got {table.unit!r}")
    if not isinstance(table.statistic, str):
        raise CostsError("statistic must be a string")
    if table.device is not None and not isinstance(table.device, dict):
        raise CostsError("device must be a dict or None")
    for section in ("segments", "heads", "policy"):
        values = getattr(table, section)
        if not isinstance(values, dict):
            raise CostsError(f"{section} must be a dict")
        _number_map({section: values}, section)
    keys = list(table.segments)
    if FINAL in table.segments and keys[-1] != FINAL:
        raise CostsError("segments must be in depth order with 'final' last")


def check_compatible(costs: CostTable, stats: Stats) -> None:
    """Check that ``costs`` prices every part the search can use with ``stats``.

    Every early exit needs a head and a policy cost, its position must be a segment key and
    positions must come in the segments' order as in the stats' ``position_index``;
    ``"final"`` must be in segments and heads.

    Raises:
        CostsError: naming the first missing key or the first position out of order.
    """
    for section in ("segments", "heads"):
        if FINAL not in getattr(costs, section):
            raise CostsError(f"costs {section} miss 'final'")
    order = {key: i for i, key in enumerate(costs.segments)}
    for ex in stats.exits:
        eid, pos = ex["id"], ex["position"]
        if eid not in costs.heads:
            raise CostsError(f"costs heads miss exit {eid!r}")
        if eid not in costs.policy:
            raise CostsError(f"costs policy misses exit {eid!r}")
        if pos not in order:
            raise CostsError(f"costs segments miss position {pos!r} (of exit {eid!r})")
    by_index = sorted({(ex["position_index"], ex["position"]) for ex in stats.exits})
    for (_, a), (_, b) in zip(by_index, by_index[1:], strict=False):
        if order[a] >= order[b]:
            raise CostsError(
                f"costs segments list position {b!r} before {a!r}, unlike the stats' position_index"
            )


def load_costs(path: str | Path) -> CostTable:
    """Read and validate a ``mess-costs`` v1 JSON file.

    Raises:
        CostsError: unreadable file, invalid JSON or invalid table.
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CostsError(f"{path}: cannot read ({exc})") from None
    except (ValueError, RecursionError) as exc:  # also: too deep, integers of 4300+ digits
        raise CostsError(f"{path}: not valid JSON ({exc})") from None
    try:
        return parse_costs(raw)
    except CostsError as exc:
        raise CostsError(f"{path}: {exc}") from None


def save_costs(table: CostTable, path: str | Path) -> None:
    """Validate and write ``table`` atomically (:func:`mess.fileio.atomic_write`)."""
    validate_costs(table)
    path = Path(path)
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(table.to_json(), fh, indent=1)
