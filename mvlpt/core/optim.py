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
        decay_1d: also decay 1-D parameters (biases, norm scales, logit scales); off by default.
    """

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 0.3
    weight_decay: float = 1e-5
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    fused: bool = True
    decay_1d: bool = False


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
    decay = [p for p in params if cfg.decay_1d or p.dim() > 1]
    no_decay = [p for p in params if not (cfg.decay_1d or p.dim() > 1)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    groups = [g for g in groups if g["params"]]
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=bool(cfg.fused and on_cuda) or None)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


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
