"""Distillation losses of MPT's source stage: KL on logits and MSE on hidden states."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ShapeMismatchError


@dataclass
class DistillConfig:
    """Weights of the distillation terms added to the task loss.

    Attributes:
        kl_weight: weight of KL(teacher ‖ student) on logits.
        mse_weight: weight of the MSE on hidden states.
        temperature: softmax temperature τ of the KL term (the loss is scaled by τ²).
    """

    kl_weight: float = 1.0
    mse_weight: float = 1.0
    temperature: float = 1.0


def _check_same(name: str, a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ShapeMismatchError(f"{name}: student has shape {tuple(a.shape)} but teacher has {tuple(b.shape)}")


def kl_distillation(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    """``τ² · mean_b KL(softmax(t_b/τ) ‖ softmax(s_b/τ))`` over the valid classes.

    Args:
        student_logits, teacher_logits: ``(B, C)`` (or ``(B, ..., C)``; leading dims are flattened).
        temperature: τ > 0.
        mask: optional bool ``(B, C)``; False marks classes outside a sample's task, which
            take no probability mass in either distribution.
    """
    _check_same("logits", student_logits, teacher_logits)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, found {temperature}")
    c = student_logits.shape[-1]
    s = student_logits.float().reshape(-1, c) / temperature
    t = teacher_logits.float().reshape(-1, c) / temperature
    if mask is not None:
        _check_same("logit mask", student_logits, mask)
        m = mask.reshape(-1, c).bool()
        s = s.masked_fill(~m, float("-inf"))
        t = t.masked_fill(~m, float("-inf"))
    log_p_s = F.log_softmax(s, dim=-1)
    log_p_t = F.log_softmax(t, dim=-1)
    p_t = log_p_t.exp()
    terms = p_t * (log_p_t - log_p_s)
    terms = torch.where(p_t > 0, terms, torch.zeros_like(terms))
    return terms.sum(-1).mean() * temperature**2


def mse_distillation(student_hidden: Tensor, teacher_hidden: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error between hidden states.

    Args:
        student_hidden, teacher_hidden: ``(B, ..., h)``.
        mask: optional bool over the leading dims ``(B, ...)`` (e.g. ``(B, n)`` for padded
            sequences); masked-out positions do not count. The mean is over valid elements.
    """
    _check_same("hidden states", student_hidden, teacher_hidden)
    diff = (student_hidden.float() - teacher_hidden.float()) ** 2
    if mask is None:
        return diff.mean()
    if tuple(mask.shape) != tuple(diff.shape[: mask.dim()]):
        raise ShapeMismatchError(
            f"hidden mask has shape {tuple(mask.shape)}; expected the leading dims {tuple(diff.shape[: mask.dim()])}"
        )
    m = mask.to(diff.dtype).reshape(*mask.shape, *([1] * (diff.dim() - mask.dim())))
    denom = m.expand_as(diff).sum().clamp_min(1.0)
    return (diff * m).sum() / denom
