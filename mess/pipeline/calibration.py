"""Exit statistics of a supernet file on a data split, written to a file (``mess calibrate``).

See docs/DESIGN.md, "Exit statistics".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mess.pipeline.data import pipeline_dataset


def calibrate_supernet(
    *,
    supernet: Path,
    data: str,
    output: Path,
    split: str = "calibration",
    pixel_thresholds: list[float] | None = None,
    size: tuple[int, int] | None = None,
    length: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    seed: int = 0,
    data_seed: int = 0,
) -> dict[str, Any]:
    """Compute and write the ``mess-stats`` v1 file of a supernet on a data split.

    Args:
        supernet: trained supernet file.
        data: ``synth``, ``synth:N``, ``cityscapes:DIR``, ``voc:DIR`` or ``folder:DIR``.
        output: ``stats.npz`` to write.
        split: the data split (``calibration`` by default).
        pixel_thresholds: the policy's pixel thresholds (default: 0.5 to 0.9 by 0.1).
        size: resize images to ``(H, W)``.
        length: images (synth: how many).
        batch_size: images per backbone pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: augmentation seed of the data set (no augmentation here).
        data_seed: mess-synth's base seed (0: the published splits).

    Returns:
        The statistics' ``meta``.

    Raises:
        PipelineError: the data cannot be read or its classes differ from the supernet's.
        SupernetFileError: ``supernet`` is not a readable supernet file.
    """
    import torch
    from rich.progress import Progress

    from mess.nn import load_supernet
    from mess.nn.calibrate import DEFAULT_PIXEL_THRESHOLDS, calibrate
    from mess.stats import Stats, save_stats, validate_stats

    sn = load_supernet(supernet)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dataset = pipeline_dataset(
        data,
        split,
        data_seed=data_seed,
        size=size,
        num_classes=sn.num_classes,
        length=length,
        seed=seed,
    )
    with Progress() as progress:
        task = progress.add_task(f"calibrating on {data}:{split}", total=len(dataset))
        arrays = calibrate(
            sn,
            dataset,
            pixel_thresholds=pixel_thresholds or DEFAULT_PIXEL_THRESHOLDS,
            batch_size=batch_size,
            device=device,
            class_names=getattr(dataset, "class_names", None),
            progress=lambda n: progress.advance(task, n),
        )
    stats = Stats(
        meta=json.loads(str(arrays["meta"])),
        intersection=arrays["intersection"],
        predicted=arrays["predicted"],
        target=arrays["target"],
        confidence=arrays["confidence"],
    )
    validate_stats(stats)
    save_stats(stats, output)
    return stats.meta
