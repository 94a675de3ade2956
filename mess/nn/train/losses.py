"""Training losses: masked cross-entropy and positive filtering distillation (MESS stage 2).

Positive filtering distillation: an early exit learns from the labels and, on the pixels where
the final exit is right (``argmax == label``, label not ignored), from the final exit's softened
predictions. The KL term is scaled by ``T^2`` so its gradients keep their size whatever the
temperature (Hinton et al., 2015).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mess.stats import IGNORE_INDEX


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean per-pixel cross-entropy over labelled pixels (0 when none is labelled).

    Args:
        logits: ``[B, C, H, W]`` (any float dtype; computed in float32).
        target: ``[B, H, W]`` class ids, ``ignore_index`` = ignore.
        ignore_index: label of ignored pixels.

    Returns:
        A scalar tensor.
    """
    total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().clamp(min=1)
    return total / count


def positive_mask(
    teacher_logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Pixels where the teacher (final exit) is right: ``argmax == label != ignore``.

    Returns:
        bool ``[B, H, W]``.
    """
    return (teacher_logits.argmax(1) == target) & (target != ignore_index)


def distillation(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """``T^2`` x mean over ``mask`` pixels of ``KL(softmax(t/T) || softmax(s/T))`` (0 if empty).

    Args:
        logits: student logits ``[B, C, H, W]``.
        teacher_logits: teacher logits, same shape (no gradient flows into them).
        mask: bool ``[B, H, W]`` pixels to distil.
        temperature: softening temperature ``T > 0``.

    Returns:
        A scalar tensor.
    """
    return Teacher.of(teacher_logits, mask, temperature).distillation(logits)


@dataclass(frozen=True)
class Teacher:
    """The teacher's side of the distillation term, computed once per batch: every exit of
    a stage-2 step learns from the same final-exit logits.

    Build with :meth:`of` (any mask) or :meth:`positive` (the teacher's right pixels).
    """

    log_p: torch.Tensor  # log softmax(t / T), float32 [B, C, H, W]
    p: torch.Tensor  # its exp
    mask: torch.Tensor  # bool [B, H, W]: pixels to distil
    count: torch.Tensor  # mask.sum(), at least 1
    temperature: float

    @classmethod
    def of(cls, teacher_logits: torch.Tensor, mask: torch.Tensor, temperature: float) -> Teacher:
        log_p = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
        count = mask.sum().clamp(min=1)
        return cls(log_p, log_p.exp(), mask, count, temperature)

    @classmethod
    def positive(
        cls,
        teacher_logits: torch.Tensor,
        target: torch.Tensor,
        temperature: float,
        ignore_index: int = IGNORE_INDEX,
    ) -> Teacher:
        mask = positive_mask(teacher_logits, target, ignore_index)
        return cls.of(teacher_logits, mask, temperature)

    def distillation(self, logits: torch.Tensor) -> torch.Tensor:
        """:func:`distillation` of ``logits`` against this teacher."""
        t = self.temperature
        log_q = F.log_softmax(logits.float() / t, dim=1)
        kl = (self.p * (self.log_p - log_q)).sum(1)  # [B, H, W]
        return (kl * self.mask).sum() / self.count * (t * t)


def positive_filtering_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    temperature: float = 2.0,
    weight: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
    teacher: Teacher | None = None,
) -> torch.Tensor:
    """Stage-2 loss of one exit: ``CE(labels) + weight * T^2 * KL`` on the teacher's right pixels.

    Args:
        logits: the exit's logits ``[B, C, H, W]`` at the label resolution.
        teacher_logits: the final exit's logits, same shape.
        target: labels ``[B, H, W]``.
        temperature: distillation temperature ``T``.
        weight: weight of the distillation term (0: labels only).
        ignore_index: label of ignored pixels.
        teacher: ``Teacher.positive(teacher_logits, target, temperature, ignore_index)``
            computed once for many exits (then ``teacher_logits`` is not read again).

    Returns:
        A scalar tensor.

    Example:
        >>> loss = positive_filtering_loss(exit_logits, final_logits, masks, temperature=2.0)
    """
    loss = cross_entropy(logits, target, ignore_index)
    if weight:
        if teacher is None:
            teacher = Teacher.positive(teacher_logits, target, temperature, ignore_index)
        loss = loss + weight * teacher.distillation(logits)
    return loss
