"""The MESS pipeline, torch side: convert -> train (stage 1, stage 2) -> calibrate -> export
-> profile -> search -> measure, in one work folder.

``mess demo``, the CLI's ``train`` and ``calibrate`` and the benchmarks run their stages from
here. One reuse rule for every stage (:mod:`mess.pipeline.reuse`): an output is reused while
the digest of its settings and inputs matches the one recorded in ``digests.json``. See
docs/DESIGN.md, "The pipeline".
"""

from mess.pipeline.build import BUILD_STAGES, build_digests, build_stages, run_build
from mess.pipeline.calibration import calibrate_supernet
from mess.pipeline.errors import PipelineError
from mess.pipeline.presets import MICRO, PAPER, PRESETS, SMALL, TINY, Preset
from mess.pipeline.reuse import Stage, discard_stale, run_stages, stage_digests
from mess.pipeline.training import train_supernet

__all__ = [
    "BUILD_STAGES",
    "MICRO",
    "PAPER",
    "PRESETS",
    "SMALL",
    "TINY",
    "PipelineError",
    "Preset",
    "Stage",
    "run_build",
    "build_digests",
    "build_stages",
    "calibrate_supernet",
    "discard_stale",
    "run_stages",
    "stage_digests",
    "train_supernet",
]
