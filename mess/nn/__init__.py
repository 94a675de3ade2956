"""The torch side of MESS: source models, exit heads, the supernet and its costs."""

from mess.nn.costs import PartCost, model_flops, part_costs
from mess.nn.heads import ExitHead, HeadWidths
from mess.nn.models import SourceError, build_model, segmentation_model
from mess.nn.supernet import (
    Position,
    Supernet,
    SupernetFileError,
    build_supernet,
    load_supernet,
    to_supernet,
)

__all__ = [
    "ExitHead",
    "HeadWidths",
    "PartCost",
    "Position",
    "SourceError",
    "Supernet",
    "SupernetFileError",
    "build_model",
    "build_supernet",
    "load_supernet",
    "model_flops",
    "part_costs",
    "segmentation_model",
    "to_supernet",
]
