"""Cost of every supernet part without a device: GFLOPs and parameters.

FLOPs count multiply-adds of convolutions and linear layers twice (2 x MACs), as
``torch.utils.flop_counter.FlopCounterMode`` does; normalisation, activations, pooling and
resizing are not counted. The count runs on a ``meta``-device twin of the supernet, so it
costs no memory and no time whatever the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mess.nn.supernet import Supernet, build_supernet
from mess.policy import policy_flops
from mess.space import FINAL


@dataclass(frozen=True)
class PartCost:
    gflops: float
    params: int


def _conv_flops(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_output = (module.in_channels // module.groups) * kh * kw
        return 2 * out.numel() * per_output
    if isinstance(module, nn.Linear):
        return 2 * out.numel() * module.in_features
    return 0


def _count(module: nn.Module, run: callable) -> int:  # type: ignore[valid-type]
    total = 0

    def hook(m: nn.Module, _inp: object, out: torch.Tensor) -> None:
        nonlocal total
        total += _conv_flops(m, out)

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return total


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def part_costs(supernet: nn.Module, input_size: tuple[int, int]) -> dict[str, dict[str, PartCost]]:
    """GFLOPs and parameters of every part for one image of ``input_size`` (H, W).

    Returns:
        ``{"segments": {position: cost, ..., "final": cost}, "heads": {exit id: cost, ...,
        "final": cost}}`` where segment ``p`` runs from the previous position (or the input)
        to ``p`` and the ``final`` segment from the last position to the original head, and
        ``heads["final"]`` is the original head with its upsampling.
    """
    assert isinstance(supernet, Supernet)
    with torch.device("meta"):
        twin = build_supernet(supernet.manifest())
    twin.eval()
    h, w = input_size
    x = torch.empty(1, 3, h, w, device="meta")
    segments: dict[str, PartCost] = {}
    heads: dict[str, PartCost] = {}
    features: dict[int, torch.Tensor] = {}
    for pos, segment in zip(twin.positions, twin.segments, strict=True):

        def run_segment(seg: nn.Module = segment) -> None:
            nonlocal x
            x = seg(x)

        flops = _count(segment, run_segment)
        segments[pos.name] = PartCost(flops / 1e9, _params(segment))
        features[pos.index] = x
    flops = _count(twin.final_segment, lambda: twin.final_segment(x))
    segments[FINAL] = PartCost(flops / 1e9, _params(twin.final_segment))
    last = twin.final_segment(x)
    low = twin.final_head.low_position
    flops = _count(
        twin.final_head, lambda: twin.final_head(last, features[low] if low is not None else None)
    )
    heads_final = PartCost(flops / 1e9, _params(twin.final_head))
    for eid in twin.early_exit_ids:
        head = twin.exit_head(eid)
        feat = features[twin.position_of(eid).index]
        flops = _count(head, lambda head=head, feat=feat: head(feat))
        heads[eid] = PartCost(flops / 1e9, _params(head))
    heads[FINAL] = heads_final
    return {"segments": segments, "heads": heads}


def model_flops(model: nn.Module, input_size: tuple[int, int]) -> int:
    """FLOPs of one forward of ``model`` counted by ``FlopCounterMode`` (the reference)."""
    h, w = input_size
    x = torch.zeros(1, 3, h, w)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def gflops_table(
    supernet: nn.Module, input_size: tuple[int, int], *, num_thresholds: int = 1
) -> dict[str, object]:
    """The ``mess-costs`` v1 table in GFLOPs for one image of ``input_size``.

    ``policy`` is an estimate of the elementwise work of one exit decision
    (:func:`mess.policy.policy_flops`) at the head's resolution.
    """
    assert isinstance(supernet, Supernet)
    parts = part_costs(supernet, input_size)
    h, w = input_size
    policy = {}
    for eid in supernet.early_exit_ids:
        stride = supernet.position_of(eid).stride
        flops = policy_flops(supernet.num_classes, -(-h // stride), -(-w // stride), num_thresholds)
        policy[eid] = flops / 1e9
    return {
        "format": "mess-costs",
        "version": 1,
        "unit": "gflops",
        "statistic": "exact",
        "device": None,
        "input_size": [h, w],
        "segments": {k: c.gflops for k, c in parts["segments"].items()},
        "heads": {k: c.gflops for k, c in parts["heads"].items()},
        "policy": policy,
    }
