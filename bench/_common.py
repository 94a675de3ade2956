"""What several benchmarks share: their presets, work folders and argument checks."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from mess.pipeline import MICRO, PRESETS, Preset

ROOT = Path(__file__).resolve().parents[1]
# The pipeline's presets and, for the tests of the benchmarks, the micro one.
ALL_PRESETS: dict[str, Preset] = {**PRESETS, "micro": MICRO}


def headline_workdir(preset_name: str) -> Path:
    """Where ``bench.headline`` builds a preset (``bench.ceiling`` reads it there)."""
    return ROOT / "bench" / "out" / f"headline-{preset_name}"


def data_seed_workdir(workdir: Path, data_seed: int) -> Path:
    """The folder of one mess-synth base seed: ``workdir`` itself for the published splits
    (0), else ``workdir/data-seed-<N>``."""
    return workdir / f"data-seed-{data_seed}" if data_seed else workdir


def seed_workdir(workdir: Path, seed: int) -> Path:
    """The build folder of one training seed: ``workdir`` itself for seed 0 (the folders built
    before seeds existed are seed 0's), else ``workdir/seed-<k>``."""
    return workdir / f"seed-{seed}" if seed else workdir


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``low``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "int"  # argparse's "invalid int value: ..." for words
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def scale_range(text: str) -> tuple[float, float]:
    """An argparse type: ``LO,HI`` with 0 < LO <= HI, finite (an augmentation's scale range)."""
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (e.g. 0.5,2), got {text!r}") from None
    if not (math.isfinite(high) and 0 < low <= high):
        raise argparse.ArgumentTypeError(f"must be 0 < LO <= HI, got {text!r}")
    return low, high


def positive_float(text: str) -> float:
    """An argparse type: a finite float > 0."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return value
