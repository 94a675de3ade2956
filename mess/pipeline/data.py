"""The pipeline's data sets: the preset's data spec with mess-synth's base seed applied.

See docs/DESIGN.md, "Data".
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mess.pipeline.errors import PipelineError


def seeded_spec(data: str, data_seed: int, num_classes: int | None = None) -> str:
    """``data`` with mess-synth's base seed ``data_seed`` in its spec (0: unchanged, the
    published splits; any other data refuses a seed). ``num_classes``: as given to
    :func:`mess.data.build_dataset` (it fills a spec without a class count)."""
    if not data_seed:
        return data
    name, _, arg = data.partition(":")
    if name != "synth":
        raise PipelineError(f"a data seed applies to mess-synth only, not {data}")
    from mess.data.synth import config_from_spec, spec_of

    try:
        config = config_from_spec(arg, num_classes=num_classes)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    return spec_of(dataclasses.replace(config, seed=data_seed))


def pipeline_dataset(
    data: str, split: str, *, data_seed: int = 0, num_classes: int | None = None, **options: Any
) -> Any:
    """:func:`mess.data.build_dataset` of ``data`` with mess-synth's base seed ``data_seed``
    (:func:`seeded_spec`), checked to have ``num_classes`` classes.

    Raises:
        PipelineError: the data cannot be read, refuses the seed or has other classes.
    """
    from mess.data import build_dataset

    spec = seeded_spec(data, data_seed, num_classes)
    try:
        dataset = build_dataset(spec, split, num_classes=num_classes, **options)
    except (ValueError, FileNotFoundError) as exc:
        raise PipelineError(str(exc)) from None
    found = getattr(dataset, "num_classes", num_classes)
    if num_classes is not None and found != num_classes:
        raise PipelineError(f"{data} has {found} classes, the supernet {num_classes}")
    return dataset


def preset_split(preset: Any, split: str) -> Any:
    """The ``calibration`` or ``test`` split of a :class:`mess.pipeline.Preset`, as long as the
    preset says (evaluation: no augmentation)."""
    lengths = {"calibration": preset.calibration_images, "test": preset.test_images}
    if split not in lengths:
        raise PipelineError(f"unknown split {split!r}: use calibration or test")
    return pipeline_dataset(
        preset.data,
        split,
        data_seed=preset.data_seed,
        size=preset.size,
        num_classes=preset.num_classes,
        length=lengths[split],
    )


def split_difficulties(
    data: str,
    lengths: dict[str, int],
    *,
    size: tuple[int, int],
    num_classes: int,
    data_seed: int = 0,
) -> dict[str, list[float]] | None:
    """mess-synth's per-image difficulty of each split (nothing is rendered); None for data
    that records none."""
    out = {}
    for split, length in lengths.items():
        source = pipeline_dataset(
            data, split, size=size, num_classes=num_classes, length=length, data_seed=data_seed
        ).source
        if not hasattr(source, "difficulty"):
            return None
        out[split] = [float(source.difficulty(i)) for i in range(len(source))]
    return out
