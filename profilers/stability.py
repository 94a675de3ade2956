"""How far the device's own speed moved while it was profiled (``mess-agent``).

A part's interval says how well its median is known from its own runs. It cannot see the
device as a whole getting faster or slower over minutes (a VM's host, a thermal limit, a
neighbour), which moves every part and the next profile's figures with it (two profiles of one
VM, each with every part to +-2 %, lay further apart than that: bench/RESULTS.md, "Paper
scale"). So the agent also times one fixed computation, the same on
every device, at the start of a job, between parts every ``every_seconds``, and at the end,
and reports the medians: their spread is the device's drift over the profile, the regime its
costs hold in. It is recorded, not corrected for: the parts do not move with the reference
closely enough (bench/RESULTS.md), and least of all under a neighbour's load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

REFERENCE = "matmul 256x256x256 float32"
# small enough to stay in cache: steady back to back, cheap on a slow device, blind to
# contention for memory (a lower bound for parts that stream their weights; a 1024-sized one
# followed the parts more closely but was itself too noisy back to back: bench/RESULTS.md)
SIZE = 256
WARMUP_RUNS = 8
RUNS = 64  # per probe
EVERY_SECONDS = 30.0
MAX_SHARE = 0.02  # of the profiling time: on a slow device the probes space out further


def reference_model() -> bytes:
    """The reference computation: one ``SIZE``-square float32 matrix product, fixed weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).random((SIZE, SIZE), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mess-speed-reference",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [SIZE, SIZE])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime the agent supports
    onnx.checker.check_model(model)
    return model.SerializeToString()


class SpeedProbe:
    """Times the reference computation now and then; :meth:`report` sums it up.

    ``every_seconds``: the least time between two probes taken by :meth:`maybe`, longer where
    a probe takes more than :data:`MAX_SHARE` of it; ``clock`` (nanoseconds) and ``run`` (one
    run of the reference) are for the tests.
    """

    def __init__(
        self,
        *,
        threads: int = 1,
        providers: list[str] | None = None,
        every_seconds: float = EVERY_SECONDS,
        clock: Callable[[], int] = time.perf_counter_ns,
        run: Callable[[], object] | None = None,
    ) -> None:
        if run is None:
            from profilers.measure import make_session, random_inputs

            session = make_session(reference_model(), threads=threads, providers=providers)
            feeds = random_inputs(session)

            def run() -> object:
                return session.run(None, feeds)

        self._run = run
        self._clock = clock
        self.every_seconds = every_seconds
        self._start = clock()
        self._last: int | None = None
        self._cost_s = 0.0  # the last probe's own time
        self.at_s: list[float] = []
        self.medians_ms: list[float] = []

    def probe(self) -> float:
        """Time the reference now: its median (ms) over :data:`RUNS` runs after a warm-up."""
        began = self._clock()
        for _ in range(WARMUP_RUNS):
            self._run()
        samples = []
        for _ in range(RUNS):
            start = self._clock()
            self._run()
            samples.append((self._clock() - start) / 1e6)
        self._last = self._clock()
        self._cost_s = (self._last - began) / 1e9
        self.at_s.append((self._last - self._start) / 1e9)
        self.medians_ms.append(float(statistics.median(samples)))
        return self.medians_ms[-1]

    def maybe(self) -> None:
        """Probe if ``every_seconds`` have passed since the last probe, and enough that the
        probes take at most :data:`MAX_SHARE` of the time."""
        wait = max(self.every_seconds, self._cost_s / MAX_SHARE)
        if self._last is None or (self._clock() - self._last) / 1e9 >= wait:
            self.probe()

    def report(self) -> dict[str, Any] | None:
        """``speed`` for the profile's context (``None`` before two probes): the probes' times
        and medians, and ``spread_pct``, their 90th percentile over their 10th, minus one
        (``None`` where the 10th percentile is 0).

        Percentiles, not the slowest over the fastest: one probe caught in a burst moves them
        little, and the range of many probes grows with their number even on a steady device
        (a probe's own noise); a drift over the profile moves them fully. Two probes give 80 %
        of their difference.
        """
        if len(self.medians_ms) < 2:
            return None
        p10, p90 = np.percentile(self.medians_ms, [10, 90])
        return {
            "reference": REFERENCE,
            "runs": RUNS,
            "at_s": [round(t, 1) for t in self.at_s],
            "medians_ms": [round(m, 4) for m in self.medians_ms],
            # a clock too coarse for the reference reads 0: no spread rather than infinity
            "spread_pct": round(100 * float(p90 / p10 - 1), 2) if p10 > 0 else None,
        }
