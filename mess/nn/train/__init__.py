"""MESS two-stage training: exit-aware backbone (stage 1), frozen-backbone heads (stage 2)."""

from mess.nn.train.common import (
    EpochRecord,
    StopTraining,
    TrainConfig,
    checkpoint_path,
    evaluate,
    fit,
)
from mess.nn.train.losses import positive_filtering_loss
from mess.nn.train.stage1 import Stage1, candidate_exits, lightest_head, train_stage1
from mess.nn.train.stage2 import Stage2, train_stage2

__all__ = [
    "EpochRecord",
    "Stage1",
    "Stage2",
    "StopTraining",
    "TrainConfig",
    "candidate_exits",
    "checkpoint_path",
    "evaluate",
    "fit",
    "lightest_head",
    "positive_filtering_loss",
    "train_stage1",
    "train_stage2",
]
