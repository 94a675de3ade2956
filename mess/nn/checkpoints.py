"""Loading local checkpoints into torchvision source models (never a download)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model."""


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a local ``.pth`` into a torchvision segmentation model, in place.

    Accepts a segmentation state dict (``backbone.*``, ``classifier.*``; ``aux_classifier.*``
    is ignored) or a classification one (``conv1.*``/``features.*``; ``fc.*``/``classifier.*``
    are ignored) for the backbone; either may be wrapped in ``{"state_dict": ...}`` or
    ``{"model": ...}``.

    Raises:
        CheckpointError: unreadable file, missing or mis-shaped tensors.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({exc.__class__.__name__})"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: expected a state dict")
    if any(k.startswith("backbone.") for k in state):
        target: nn.Module = model
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    else:
        target = model.backbone  # type: ignore[assignment]
        state = {
            k.removeprefix("features."): v
            for k, v in state.items()
            if not k.startswith(("fc.", "classifier."))
        }
    expected = target.state_dict()
    for k, v in state.items():
        if k not in expected:
            # torchvision's getter drops layers past the last returned one; they are not needed
            continue
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{path}: tensor {k!r} has shape {tuple(v.shape)}, the model expects "
                f"{tuple(expected[k].shape)} (wrong --num-classes or architecture?)"
            )
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{path}: missing tensor {missing[0]!r} ({len(missing)} missing)")
    target.load_state_dict({k: v for k, v in state.items() if k in expected})
