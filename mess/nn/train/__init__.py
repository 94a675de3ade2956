"""MESS two-stage training: exit-aware backbone (stage 1), frozen-backbone heads (stage 2).

See docs/DESIGN.md, "Training". :mod:`~mess.nn.train.stage1` and :mod:`~mess.nn.train.stage2`
are the stages; :mod:`~mess.nn.train.loop` runs either one (:func:`fit`) with the settings of
:mod:`~mess.nn.train.config`, the data order of :mod:`~mess.nn.train.loaders`, the optimiser
of :mod:`~mess.nn.train.optim`, the validation of :mod:`~mess.nn.train.evaluation`, the
checkpoints of :mod:`~mess.nn.train.checkpoint`, the seeding of :mod:`~mess.nn.train.rng` and
the ``torchrun`` setup of :mod:`~mess.nn.train.distributed`.
"""

from mess.nn.train.checkpoint import checkpoint_path
from mess.nn.train.config import TrainConfig
from mess.nn.train.evaluation import evaluate
from mess.nn.train.loop import EpochRecord, StopTraining, fit
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
