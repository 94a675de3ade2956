"""The pipeline's data sets: the preset's data spec with mess-synth's base seed applied.

See docs/DESIGN.md, "Data".
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mess.pipeline.errors import PipelineError


def pipeline_dataset(data: str, split: str, *, data_seed: int = 0, **options: Any) -> Any:
    """:func:`mess.data.build_dataset` of ``data``, its mess-synth images drawn from base seed
    ``data_seed`` (:attr:`mess.data.SynthConfig.seed`; 0: the published splits).

    The data spec does not carry the base seed, so it is set on the source here.

    Raises:
        PipelineError: a data seed other than 0 for data that is not mess-synth.
    """
    from mess.data import SynthSource, build_dataset

    dataset = build_dataset(data, split, **options)
    if data_seed:
        source = dataset.source
        if not isinstance(source, SynthSource):
            raise PipelineError(f"a data seed applies to mess-synth only, not {data}")
        config = dataclasses.replace(source.config, seed=data_seed)
        dataset.source = SynthSource(config, source.split, len(source))
    return dataset


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
