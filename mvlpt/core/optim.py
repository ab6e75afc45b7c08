"""Optimizers (AdamW, SGD) and the learning-rate schedule (warm-up, then cosine/linear/constant)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR


@dataclass
class OptimConfig:
    """Optimizer settings.

    Attributes:
        name: ``adamw`` or ``sgd``.
        lr: peak learning rate (prompt tuning uses large rates: ~0.3 for T5 prompts with AdamW,
            2e-3 with SGD for CLIP prompts as in CoOp/MVLPT).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        momentum: SGD momentum.
        betas: AdamW betas.
        fused: use the fused CUDA implementation when on GPU.
    """

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 0.3
    weight_decay: float = 1e-5
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    fused: bool = True


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warm-up for ``warmup_steps``, then ``name`` decay
    to ``min_lr_ratio × lr`` at the last step."""

    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over ``params`` (only those with ``requires_grad``)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: check which prompt groups the stage trains")
    on_cuda = all(p.is_cuda for p in params)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                 fused=bool(cfg.fused and on_cuda) or None)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the peak rate at ``step`` (0-based, the step about to be taken)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.name == "constant":
        return 1.0
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.name == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        decay = 1.0 - progress
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, cfg: ScheduleConfig) -> LambdaLR:
    """A ``LambdaLR`` following :func:`lr_factor`; its state dict is plain JSON data."""
    return LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg))
