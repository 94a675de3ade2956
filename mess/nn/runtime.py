"""The MESS exit policy at run time in PyTorch: one image, one configuration.

This is the reference the tailored ONNX model must match: same exit index, logits within
1e-4 relative error.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mess.nn.normalize import NormalizeLayer
from mess.nn.policy import leaves
from mess.nn.supernet import Supernet
from mess.search.configuration import Configuration
from mess.space import FINAL


def check_configuration(supernet: Supernet, config: dict[str, Any]) -> Configuration:
    """The parsed configuration; ``ValueError`` unless its exits are known and at strictly
    increasing positions (``KeyError`` for unknown ids)."""
    parsed = Configuration.from_json(config)
    exits, terminal = parsed.exits, parsed.terminal
    last = -1
    for rule in exits:
        eid = rule.id
        index = supernet.position_of(eid).index
        supernet.exit_head(eid)
        if index <= last:
            raise ValueError(f"exit {eid} is not deeper than the exit before it")
        last = index
    if terminal != FINAL:
        supernet.exit_head(terminal)
        if supernet.position_of(terminal).index <= last:
            raise ValueError(f"terminal {terminal} must be deeper than the last early exit")
    return parsed


@torch.inference_mode()
def infer(
    supernet: Supernet, image: torch.Tensor, configuration: dict[str, Any]
) -> tuple[torch.Tensor, int]:
    """Run one image through a configuration with the MESS exit policy.

    Args:
        supernet: the supernet (eval mode is set here).
        image: ``[1, 3, H, W]`` or ``[3, H, W]`` RGB in [0, 1].
        configuration: as ``mess search --json`` prints it.

    Returns:
        ``(logits [1, C, H, W], exit index)``; index ``k`` is the terminal.
    """
    parsed = check_configuration(supernet, configuration)
    exits, terminal = parsed.exits, parsed.terminal
    supernet.eval()
    x = image.unsqueeze(0) if image.dim() == 3 else image
    size = x.shape[-2:]
    x = NormalizeLayer().to(x.device)(x)
    features: dict[int, torch.Tensor] = {}
    low = supernet.final_head.low_position
    depth = 0

    def advance(to: int) -> torch.Tensor:
        nonlocal x, depth
        while depth <= to:
            x = supernet.segments[depth](x)
            if depth == low:
                features[depth] = x
            depth += 1
        return x

    def head_logits(eid: str) -> torch.Tensor:
        return supernet.exit_head(eid)(advance(supernet.position_of(eid).index))

    def upsample(logits: torch.Tensor) -> torch.Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    for k, rule in enumerate(exits):
        logits = head_logits(rule.id)
        if bool(leaves(logits, rule.pixel_threshold, rule.image_threshold)[0]):
            return upsample(logits), k
    if terminal != FINAL:
        return upsample(head_logits(terminal)), len(exits)
    last = advance(len(supernet.segments) - 1)
    low_feature = features.get(low) if low is not None else None
    out = supernet.final_head(supernet.final_segment(last), low_feature)
    return upsample(out), len(exits)
