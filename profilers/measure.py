"""The measurement protocol of ``mess-agent`` (onnxruntime only).

- thread settings fixed and recorded (intra-op threads, one inter-op thread, sequential);
- inputs of the exact shapes the part sees in the model (fixed shapes from the ONNX graph),
  random data (never zeros), drawn once per part from a seeded generator;
- warm-up until timings settle: at least 5 runs, then until the median of the last 5 runs is
  within 5 % of the 5 before, at most 2 s (``quick``) / 5 s (``full``);
- then timed runs until both at least ``min_runs`` (64 / 256) and ``min_seconds`` (1 s / 3 s);
- parts measured in a random (seeded) order so drift does not bias one part;
- every raw per-iteration time is kept (milliseconds, ``time.perf_counter_ns``);
- optionally cold (``mess-agent --cold-cache``, recorded as ``"cache": "cold"`` in the
  context): before every run the CPU caches are flushed by reading a buffer twice the size of
  the largest cache, then the part's inputs are read back in, as in a whole model whose other
  parts have run since. Timed warm, over and over, a part keeps its weights in cache: where a
  model's weights outgrow the cache the sum of warm parts is optimistic (ResNet-18 at 64x64 on
  a 32 MB L3: the whole ran 36 % over it), cold parts are pessimistic where they fit (a cut at
  ``layer1.0``: 20 % under). Warm is the default, closer at the sizes that matter (128x128:
  within 2.5 % warm, up to 9 % pessimistic cold); cold for budgets that must hold.
  Figures: bench/RESULTS.md. Whole models (``mess-agent bench``, the agent's ``wholes``) run
  warm, as a device loops them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TIERS = {
    "quick": {"min_runs": 64, "min_seconds": 1.0, "max_warmup_seconds": 2.0},
    "full": {"min_runs": 256, "min_seconds": 3.0, "max_warmup_seconds": 5.0},
    # for tests and demos of the plumbing only: too few runs to report
    "smoke": {"min_runs": 8, "min_seconds": 0.0, "max_warmup_seconds": 0.05},
}
_ONNX_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


PROTOCOL = "mess-agent/1"
_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
_FLUSH_DEFAULT = 64 * 2**20  # when the cache size is unknown
_FLUSH_MAX = 512 * 2**20
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def largest_cache_bytes(root: Path = _CACHE_DIR) -> int | None:
    """Size of this CPU's largest cache from Linux sysfs (``index*/size``, e.g. ``32768K``)."""
    sizes = []
    for entry in sorted(root.glob("index*/size")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            text = entry.read_text().strip().upper()
            unit = text[-1] if text[-1:] in _UNITS else ""
            sizes.append(int(text.removesuffix(unit)) * _UNITS[unit])
    return max(sizes) if sizes else None


class CacheFlusher:
    """Evicts the CPU caches before a timed run (see the module docstring).

    Reads a buffer twice the largest cache (64 MiB when unknown, at most 512 MiB), then the
    run's inputs, so that they, and not the part's weights, are what the cache holds.
    """

    def __init__(self, nbytes: int | None = None) -> None:
        if nbytes is None:
            cache = largest_cache_bytes()
            nbytes = min(2 * cache, _FLUSH_MAX) if cache else _FLUSH_DEFAULT
        self.buffer = np.ones(max(nbytes // 4, 1), dtype=np.float32)

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> None:
        self.buffer.sum()
        for value in feeds.values():
            np.asarray(value).sum()


@dataclass
class Timing:
    """Raw timings of one model or part, in milliseconds."""

    name: str
    samples_ms: list[float]
    warmup_runs: int = 0

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples_ms))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.samples_ms, 90))

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples_ms))


def make_session(
    model: bytes | str, *, threads: int = 1, providers: list[str] | None = None
) -> Any:
    """An onnxruntime session with fixed, recorded thread settings."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=providers or ["CPUExecutionProvider"])


def random_inputs(session: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the exact (fixed) shapes and types the session expects."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        dtype = _ONNX_TO_NUMPY.get(spec.type, np.float32)
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.random(shape, dtype=np.float64).astype(dtype)
        else:
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


def time_session(
    session: Any,
    feeds: Mapping[str, np.ndarray],
    *,
    tier: str = "quick",
    name: str = "model",
    clock: Callable[[], int] = time.perf_counter_ns,
    flush: Callable[[Mapping[str, np.ndarray]], None] | None = None,
) -> Timing:
    """Warm up until settled, then time runs per the tier's protocol.

    ``flush``: called before every run, untimed (a :class:`CacheFlusher` times the model
    cold); ``None`` times it warm.
    """
    spec = TIERS[tier]
    run = session.run

    def once() -> float:
        if flush is not None:
            flush(feeds)
        start = clock()
        run(None, dict(feeds))
        return (clock() - start) / 1e6

    warm: list[float] = []
    warm_start = time.perf_counter()
    while True:
        warm.append(once())
        if len(warm) >= 10:
            last, before = statistics.median(warm[-5:]), statistics.median(warm[-10:-5])
            if abs(last - before) <= 0.05 * before:
                break
        if len(warm) >= 5 and time.perf_counter() - warm_start > spec["max_warmup_seconds"]:
            break
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < spec["min_runs"] or time.perf_counter() - start < spec["min_seconds"]:
        samples.append(once())
    return Timing(name, samples, warmup_runs=len(warm))


def measure_parts(
    parts: Mapping[str, bytes],
    *,
    threads: int = 1,
    providers: list[str] | None = None,
    tier: str = "quick",
    seed: int = 0,
    progress: Callable[[str, Timing], None] | None = None,
    cold: bool = False,
    flush: Callable[[Mapping[str, np.ndarray]], None] | None = None,
) -> dict[str, Timing]:
    """Time every part (in a seeded random order); returns timings by part name.

    ``cold``: flush the caches before each run (see the module docstring); ``flush``: what
    does it (default: a :class:`CacheFlusher`).
    """
    order = sorted(parts)
    random.Random(seed).shuffle(order)
    if cold and flush is None:
        flush = CacheFlusher()
    elif not cold:
        flush = None
    timings = {}
    for i, name in enumerate(order):
        session = make_session(parts[name], threads=threads, providers=providers)
        feeds = random_inputs(session, seed + i)
        timing = time_session(session, feeds, tier=tier, name=name, flush=flush)
        timings[name] = timing
        if progress is not None:
            progress(name, timing)
    return timings


def measurement_context(
    threads: int, providers: list[str] | None, tier: str, *, cold: bool = False
) -> dict[str, Any]:
    """What the timings depend on; a change of any of it makes a new profile version."""
    import onnxruntime as ort

    context = {
        "runtime": "onnxruntime",
        "runtime_version": ort.__version__,
        "providers": providers or ["CPUExecutionProvider"],
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "execution_mode": "sequential",
        "tier": tier,
        "protocol": PROTOCOL,
    }
    if cold:  # only then: warm contexts stay those of the profiles stored before it existed
        context["cache"] = "cold"
    return context


def device_attributes() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python, runtime and providers of this machine."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "runtime": "onnxruntime",
        "runtime_version": ort.__version__,
        "providers": ort.get_available_providers(),
    }
