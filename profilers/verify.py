"""Verification measurements: a tailored model timed whole, exit path by exit path.

The model is the one the service ships (``/v1/configurations/{id}/model.onnx``). Its
verification variant (:func:`mess.onnx.force_paths`) takes path ``k`` on demand, every
policy before ``k`` still evaluated, so each path is timed as the shipped model runs it, on
one session (one set of weights in memory, as on the device), with the protocol of a part
(:func:`profilers.measure.time_session`: warm-up until settled, then the tier's runs). Paths
are timed in a seeded random order, so that drift does not bias one of them.

When the job gives the configuration's exit fractions, the paths are timed as a deployment
runs them instead: one stream of runs whose path is drawn at random with those fractions
(:func:`time_mixed`). A path timed over and over keeps its weights in the caches; in a stream
where most images leave early, the deep layers' weights are cold when a rare image needs them,
and the deep paths run slower (measured on the demo supernet: 15-25 % on its deepest paths).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from profilers.measure import (
    TIERS,
    Timing,
    cap_reached,
    make_session,
    random_inputs,
    time_session,
)
from profilers.precision import median_halfwidth


def measure_paths(
    model: bytes,
    *,
    threads: int = 1,
    providers: list[str] | None = None,
    tier: str = "quick",
    seed: int = 0,
    progress: Callable[[str, Timing], None] | None = None,
    fractions: list[float] | None = None,
) -> list[list[float]]:
    """Every timed run's ms of each exit path (early exits in order, terminal last).

    ``fractions``: the configuration's exit fractions, one per path: the paths are timed in
    one stream mixed by them (:func:`time_mixed`); ``None``: each path on its own.
    """
    import onnx

    from mess.onnx import FORCE_INPUT, force_paths, num_paths

    proto = onnx.load_from_string(model)
    session = make_session(
        force_paths(proto).SerializeToString(), threads=threads, providers=providers
    )
    feeds = random_inputs(session, seed)
    count = num_paths(proto)
    path_feeds = [{**feeds, FORCE_INPUT: np.array(k, dtype=np.int64)} for k in range(count)]
    if fractions is not None:
        if len(fractions) != count:
            raise ValueError(f"{len(fractions)} exit fractions for a model of {count} paths")
        timings = time_mixed(session, path_feeds, fractions, tier=tier, seed=seed)
        if progress is not None:
            for k, timing in enumerate(timings):
                progress(f"path {k}", timing)
        return [t.samples_ms for t in timings]
    order = list(range(count))
    random.Random(seed).shuffle(order)
    samples: dict[int, list[float]] = {}
    for k in order:
        timing = time_session(session, path_feeds[k], tier=tier, name=f"path {k}")
        samples[k] = timing.samples_ms
        if progress is not None:
            progress(f"path {k}", timing)
    return [samples[k] for k in sorted(samples)]


def mix_weights(fractions: list[float]) -> list[float]:
    """The draw weights of the paths: the fractions, each raised to at least a quarter of an
    even share, so that a path no calibration image takes is still timed (its time counts
    for the worst case)."""
    floor = 1.0 / (4 * len(fractions))
    weights = [max(float(f), floor) for f in fractions]
    total = sum(weights)
    return [w / total for w in weights]


def time_mixed(
    session: Any,
    path_feeds: list[dict[str, np.ndarray]],
    fractions: list[float],
    *,
    tier: str = "quick",
    seed: int = 0,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> list[Timing]:
    """Time the paths in one stream, each run's path drawn with :func:`mix_weights`.

    Warm-up: each path a few times, then the stream. It stops once every path has the tier's
    minimum runs and either its median is known to the tier's target (adaptive tiers), or the
    stream has run the tier's time for every path (fixed tiers: ``min_seconds`` times the
    number of paths; adaptive: the time cap, as :func:`profilers.measure.cap_reached` says
    for the stream's paths together); never before the minimum runs.
    """
    spec = TIERS[tier]
    rng = random.Random(seed)
    weights = mix_weights(fractions)
    paths = list(range(len(path_feeds)))
    run = session.run
    for _ in range(5):
        for k in paths:
            run(None, path_feeds[k])
    budget_s = spec.get("min_seconds", 0.0) * len(paths)  # fixed tiers
    samples: list[list[float]] = [[] for _ in paths]
    start = clock()
    drawn = 0
    while True:
        k = rng.choices(paths, weights)[0]
        t0 = clock()
        run(None, path_feeds[k])
        samples[k].append((clock() - t0) / 1e6)
        drawn += 1
        if drawn % len(paths) or min(len(x) for x in samples) < spec["min_runs"]:
            continue
        elapsed = (clock() - start) / 1e9
        if "target" not in spec:
            if elapsed >= budget_s:
                break
            continue
        if cap_reached(spec, min(len(x) for x in samples), elapsed, len(paths)):
            break
        widths = [median_halfwidth(x) for x in samples]
        if all(w is not None and w <= spec["target"] for w in widths):
            break
    return [Timing(f"path {k}", samples[k], warmup_runs=5) for k in paths]


IMAGE_RUNS = 5  # timed runs per sample image (after one untimed)


def run_images(
    model: bytes,
    samples: bytes,
    *,
    threads: int = 1,
    providers: list[str] | None = None,
) -> dict[str, list[Any]]:
    """The shipped model on the bundle's sample images: each image's exit and mean ms.

    The server compares the exits with those the statistics predict (a runtime or precision
    that moves decisions shows as disagreement) and reports the latency on real images.
    """
    import onnx

    from mess.bundle import load_samples

    dims = onnx.load_from_string(model).graph.input[0].type.tensor_type.shape.dim
    images, indices = load_samples(samples, (int(dims[2].dim_value), int(dims[3].dim_value)))
    session = make_session(model, threads=threads, providers=providers)
    exits, times = [], []
    for image in images:
        feeds = {"image": image[None]}
        _, taken = session.run(["logits", "exit"], feeds)
        runs = []
        for _ in range(IMAGE_RUNS):
            start = time.perf_counter_ns()
            session.run(["logits", "exit"], feeds)
            runs.append((time.perf_counter_ns() - start) / 1e6)
        exits.append(int(taken))
        times.append(float(statistics.fmean(runs)))
    return {"indices": [int(i) for i in indices], "exits": exits, "ms": times}
