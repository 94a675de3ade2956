"""Verification measurements: a tailored model timed whole, exit path by exit path.

The model is the one the service ships (``/v1/configurations/{id}/model.onnx``). Its
verification variant (:func:`mess.onnx.force_paths`) takes path ``k`` on demand, every
policy before ``k`` still evaluated, so each path is timed as the shipped model runs it, on
one session (one set of weights in memory, as on the device), with the protocol of a part
(:func:`profilers.measure.time_session`: warm-up until settled, then the tier's runs). Paths
are timed in a seeded random order, so that drift does not bias one of them.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from profilers.measure import Timing, make_session, random_inputs, time_session


def measure_paths(
    model: bytes,
    *,
    threads: int = 1,
    providers: list[str] | None = None,
    tier: str = "quick",
    seed: int = 0,
    progress: Callable[[str, Timing], None] | None = None,
) -> list[list[float]]:
    """Every timed run's ms of each exit path (early exits in order, terminal last)."""
    import onnx

    from mess.onnx import FORCE_INPUT, force_paths, num_paths

    proto = onnx.load_from_string(model)
    session = make_session(
        force_paths(proto).SerializeToString(), threads=threads, providers=providers
    )
    feeds = random_inputs(session, seed)
    order = list(range(num_paths(proto)))
    random.Random(seed).shuffle(order)
    samples: dict[int, list[float]] = {}
    for k in order:
        path_feeds = {**feeds, FORCE_INPUT: np.array(k, dtype=np.int64)}
        timing = time_session(session, path_feeds, tier=tier, name=f"path {k}")
        samples[k] = timing.samples_ms
        if progress is not None:
            progress(f"path {k}", timing)
    return [samples[k] for k in sorted(samples)]


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
