"""The measurement protocol of ``mess-agent`` (onnxruntime only).

See docs/DESIGN.md, "Agent measurement protocol". In short:

- thread settings fixed and recorded (intra-op threads, one inter-op thread, sequential);
- inputs of the exact shapes the part sees in the model (fixed shapes from the ONNX graph),
  random data (never zeros), drawn once per part from a seeded generator;
- each distinct computation timed once: parts are grouped by the signature of their graph
  without weight values (:func:`mess.onnx.signature.part_signature`), one part of each group is
  timed and its timing stands for the group's (every stage position's heads are the same
  computations with other weights; a dense convolution's time does not depend on the weight
  values). ``share=False`` (``mess-agent --no-share``) times every part;
- warm-up until timings settle: at least 5 runs, then until the median of the last 5 runs is
  within 5 % of the 5 before, at most 2 s (``quick``) / 5 s (``full``);
- then timed runs until the median is known well enough: until the 95 % confidence interval
  of the median (distribution-free, from order statistics: :mod:`profilers.precision`) lies
  within +-2 % (``quick``) / +-1 % (``full``) of it, checked after ``min_runs`` (16 / 32) and
  then every ``max(8, runs // 10)`` runs; a part that gets there in no time stops there, a noisy
  one stops at the time cap (2 s / 6 s, never before ``min_runs``) and reports the precision
  it reached. A heavy part has few runs by the cap (a 100 ms part: 20), too few to know a
  median to +-2 % even when each run is steady, so the cap waits for ``cap_runs`` (256 / 512)
  runs, up to a ceiling per part (``max_part_seconds``, 30 s / 60 s); light parts, which
  reach the cap with hundreds of runs, are not affected. The fixed protocol of earlier
  profiles (at least 64 / 256 runs and 1 s / 3 s) stays available as ``quick-fixed`` /
  ``full-fixed``;
- parts measured in a random (seeded) order so drift does not bias one part; the drift itself
  is probed by the agent (:mod:`profilers.stability`) and recorded beside the parts' precision;
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

from profilers.precision import CONFIDENCE, median_halfwidth

# A tier with a ``target`` is adaptive: timed until the median's 95 % confidence interval is
# within +-target of it (relative), at least ``min_runs``, at most ``max_seconds``; the cap is
# not applied before ``min_runs``, nor before ``cap_runs`` unless the part has run
# ``max_part_seconds``. One without is fixed: at least ``min_runs`` and ``min_seconds``.
TIERS: dict[str, dict[str, float]] = {
    "quick": {
        "target": 0.02,
        "min_runs": 16,
        "max_seconds": 2.0,
        "cap_runs": 256,
        "max_part_seconds": 30.0,
        "max_warmup_seconds": 2.0,
    },
    "full": {
        "target": 0.01,
        "min_runs": 32,
        "max_seconds": 6.0,
        "cap_runs": 512,
        "max_part_seconds": 60.0,
        "max_warmup_seconds": 5.0,
    },
    # the fixed protocol of profiles before the adaptive one (mess-agent/1)
    "quick-fixed": {"min_runs": 64, "min_seconds": 1.0, "max_warmup_seconds": 2.0},
    "full-fixed": {"min_runs": 256, "min_seconds": 3.0, "max_warmup_seconds": 5.0},
    # for tests and demos of the plumbing only: too few runs to report
    "smoke": {"min_runs": 8, "min_seconds": 0.0, "max_warmup_seconds": 0.05},
}
CHECK_EVERY = 8  # runs between two checks of the precision, at least (see time_session)
_ONNX_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


PROTOCOL = "mess-agent/2"
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
    """Raw timings of one model or part, in milliseconds.

    ``signature``: of the part's computation (``None`` when parts were not grouped);
    ``shared_from``: the part whose runs these are, when it is not this one.
    """

    name: str
    samples_ms: list[float]
    warmup_runs: int = 0
    signature: str | None = None
    shared_from: str | None = None

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples_ms))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.samples_ms, 90))

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples_ms))

    @property
    def halfwidth(self) -> float | None:
        """Relative half-width of the median's 95 % confidence interval (``None``: too few)."""
        return median_halfwidth(self.samples_ms)


def cap_reached(spec: Mapping[str, float], runs: int, seconds: float, streams: int = 1) -> bool:
    """Whether an adaptive tier's time cap stops timing after ``seconds`` with ``runs`` (the
    fewest of any of ``streams`` timed together): past the cap, and past the cap's runs or the
    ceiling (both caps scale with the streams). The minimum runs are the caller's to check."""
    if seconds < spec["max_seconds"] * streams:
        return False
    return runs >= spec["cap_runs"] or seconds >= spec["max_part_seconds"] * streams


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
    """Warm up until settled, then time runs per the tier's protocol (module docstring).

    ``clock`` times the runs and the phases (a fake one drives the tests); ``flush``: called
    before every run, untimed (a :class:`CacheFlusher` times the model cold); ``None`` times
    it warm.
    """
    spec = TIERS[tier]
    run = session.run

    def once() -> float:
        if flush is not None:
            flush(feeds)
        start = clock()
        run(None, dict(feeds))
        return (clock() - start) / 1e6

    def seconds_since(start_ns: int) -> float:
        return (clock() - start_ns) / 1e9

    warm: list[float] = []
    warm_start = clock()
    while True:
        warm.append(once())
        if len(warm) >= 10:
            last, before = statistics.median(warm[-5:]), statistics.median(warm[-10:-5])
            if abs(last - before) <= 0.05 * before:
                break
        if len(warm) >= 5 and seconds_since(warm_start) > spec["max_warmup_seconds"]:
            break
    samples: list[float] = []
    start = clock()
    if "target" not in spec:
        while len(samples) < spec["min_runs"] or seconds_since(start) < spec["min_seconds"]:
            samples.append(once())
        return Timing(name, samples, warmup_runs=len(warm))
    check_at = spec["min_runs"]
    while True:
        samples.append(once())
        if len(samples) < spec["min_runs"]:
            continue
        if cap_reached(spec, len(samples), seconds_since(start)):
            break
        if len(samples) >= check_at:
            halfwidth = median_halfwidth(samples)
            if halfwidth is not None and halfwidth <= spec["target"]:
                break
            # every few runs while few, every tenth more when many: sorting is O(n log n)
            check_at = len(samples) + max(CHECK_EVERY, len(samples) // 10)
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
    share: bool = True,
    done: Mapping[str, Timing] | None = None,
) -> dict[str, Timing]:
    """Time every part (in a seeded random order); returns timings by part name.

    ``share``: time one part per signature of computation, the first of its group in that
    order; the others get its timing (``Timing.shared_from`` names it). ``cold``: flush the
    caches before each run (see the module docstring); ``flush``: what does it (default: a
    :class:`CacheFlusher`). ``progress`` is called for every part timed or shared here.
    ``done``: parts timed already (a resumed job): not timed again, returned as they are,
    and their timings stand for the parts that share their signature.
    """
    from mess.onnx.signature import part_signature

    order = sorted(parts)
    random.Random(seed).shuffle(order)
    if cold and flush is None:
        flush = CacheFlusher()
    elif not cold:
        flush = None
    done = done or {}
    timings: dict[str, Timing] = {}
    timed: dict[str, Timing] = {}  # by signature
    for earlier in sorted(done.values(), key=lambda t: t.shared_from is not None):
        if share and earlier.signature is not None:
            timed.setdefault(earlier.signature, earlier)  # the one timed, where stored
    for i, name in enumerate(order):
        if name in done:
            timings[name] = done[name]
            continue
        signature = part_signature(parts[name]) if share else None
        first = timed.get(signature) if signature is not None else None
        if first is not None:
            timing = Timing(
                name,
                first.samples_ms,
                warmup_runs=first.warmup_runs,
                signature=signature,
                shared_from=first.shared_from or first.name,
            )
        else:
            session = make_session(parts[name], threads=threads, providers=providers)
            feeds = random_inputs(session, seed + i)
            timing = time_session(session, feeds, tier=tier, name=name, flush=flush)
            timing.signature = signature
            if signature is not None:
                timed[signature] = timing
        timings[name] = timing
        if progress is not None:
            progress(name, timing)
    return timings


def measurement_context(
    threads: int,
    providers: list[str] | None,
    tier: str,
    *,
    cold: bool = False,
    share: bool = True,
) -> dict[str, Any]:
    """What the timings depend on; a change of any of it makes a new profile version.

    ``rule``: the tier's stopping rule (adaptive: target, minimum runs, cap; fixed: runs and
    seconds); ``share``: whether parts of one signature share one timing.
    """
    import onnxruntime as ort

    spec = TIERS[tier]
    if "target" in spec:
        rule: dict[str, Any] = {
            "stop": "median known",
            "interval": "order statistics (binomial ranks)",
            "confidence": CONFIDENCE,
            "target": spec["target"],
            "min_runs": int(spec["min_runs"]),
            "max_seconds": spec["max_seconds"],
            "cap_runs": int(spec["cap_runs"]),
            "max_part_seconds": spec["max_part_seconds"],
            "check_every": CHECK_EVERY,
        }
    else:
        rule = {
            "stop": "fixed",
            "min_runs": int(spec["min_runs"]),
            "min_seconds": spec["min_seconds"],
        }
    context = {
        "runtime": "onnxruntime",
        "runtime_version": ort.__version__,
        "providers": providers or ["CPUExecutionProvider"],
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "execution_mode": "sequential",
        "tier": tier,
        "protocol": PROTOCOL,
        "rule": rule | {"max_warmup_seconds": spec["max_warmup_seconds"]},
        "share": share,
    }
    if cold:
        context["cache"] = "cold"
    return context


def measurement_report(timings: Mapping[str, Timing]) -> dict[str, Any]:
    """What one job's measurement reached, for its profile's context.

    ``precision``: per part, the median's 95 % interval half-width in % (``None``: too few
    runs) and the runs; ``signatures`` (when parts were grouped): each signature's parts, the
    one timed first.
    """
    precision = {}
    for name, timing in timings.items():
        halfwidth = timing.halfwidth
        precision[name] = {
            "halfwidth_pct": None if halfwidth is None else round(100 * halfwidth, 3),
            "runs": len(timing.samples_ms),
        }
    report: dict[str, Any] = {"precision": precision}
    groups: dict[str, list[str]] = {}
    for name, timing in timings.items():
        if timing.signature is not None:
            groups.setdefault(timing.signature, []).append(name)
    if groups:
        report["signatures"] = {
            signature: sorted(names, key=lambda n: timings[n].shared_from is not None)
            for signature, names in groups.items()
        }
    return report


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
