"""Run tailored ONNX models (and the original network) on the test split, batch 1.

See docs/DESIGN.md, "Tailored ONNX model".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mess.evaluate import Evaluation, evaluate_model
from mess.fileio import write_bytes_atomic
from mess.pipeline.data import preset_split
from mess.pipeline.presets import Preset

ORIGINAL = {"exits": [], "terminal": "final"}  # the original network: ``final`` alone
Sample = tuple[np.ndarray, np.ndarray]


def load_test_split(*, preset: Preset) -> list[Sample]:
    """The preset's test split as ``(image float32 [3,H,W], mask [H,W])`` arrays."""
    test = preset_split(preset, "test")
    samples = []
    for i in range(len(test)):
        image, mask = test[i]
        samples.append((np.asarray(image), np.asarray(mask)))
    return samples


def write_model(
    *,
    bundle: Path,
    configuration: Mapping[str, Any],
    output: Path,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Assemble ``configuration`` of ``bundle`` into one ONNX model at ``output``."""
    from mess.onnx import assemble

    proto = assemble(bundle, configuration, metadata=metadata)
    write_bytes_atomic(output, proto.SerializeToString())


def measure_in_rounds(
    *,
    models: Mapping[str, Path],
    samples: Sequence[Sample],
    num_classes: int,
    rounds: int = 1,
    threads: int = 1,
    providers: list[str] | None = None,
    warm_up: str | None = None,
    on_round: Callable[[int, dict[str, Evaluation]], None] | None = None,
) -> dict[str, list[Evaluation]]:
    """Run every model on ``samples``, once per round, in the same order each round.

    The machine may be shared, so its speed drifts: interleaving the models spreads the drift
    over all of them, and the original's mean per round shows it.

    Args:
        models: ONNX model files by name.
        samples: labelled images of the models' input size.
        num_classes: C.
        rounds: passes over ``samples``.
        threads: onnxruntime intra-op threads.
        providers: onnxruntime execution providers (default: the CPU).
        warm_up: a model to run untimed on the first ten samples first (warms the process up).
        on_round: called after each round with its index and ``{name: evaluation}``.

    Returns:
        ``{name: [evaluation per round]}``.
    """

    def run(name: str, images: Sequence[Sample]) -> Evaluation:
        return evaluate_model(
            str(models[name]),
            images,
            num_classes=num_classes,
            threads=threads,
            providers=providers,
        )

    if warm_up is not None:
        run(warm_up, samples[:10])
    runs: dict[str, list[Evaluation]] = {name: [] for name in models}
    for r in range(rounds):
        for name in models:
            runs[name].append(run(name, samples))
        if on_round is not None:
            on_round(r, {name: evals[-1] for name, evals in runs.items()})
    return runs


def pool(evaluations: Sequence[Evaluation]) -> Evaluation:
    """One evaluation of rounds of the same model: its outputs, every round's latencies
    (round after round, so image ``i`` of round ``r`` is at ``r * N + i``).

    Raises:
        RuntimeError: the rounds disagree on the outputs (mIoU or exits taken).
    """
    first = evaluations[0]
    if any(e.exit_counts != first.exit_counts or e.miou != first.miou for e in evaluations):
        raise RuntimeError("a model gave different outputs from one round to the next")
    latency = [ms for e in evaluations for ms in e.latency_ms]
    return Evaluation(
        first.miou,
        first.per_class_iou,
        first.exit_counts,
        latency,
        first.intersection,
        first.union,
    )
