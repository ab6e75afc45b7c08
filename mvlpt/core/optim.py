"""Optimizers (AdamW, SGD) and the learning-rate schedule (warm-up, then cosine/linear/constant)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR


#: parameter groups a learning-rate multiplier can name (prompt groups of :mod:`.prompts`, plus the rest)
PARAM_GROUPS = ("shared", "task_factors", "task_prompts", "other")

#: default learning-rate multipliers of the task factors ``U, V`` per optimizer (``optim.group_lr``
#: overrides them). SGD: the factors' gradient carries ``P*`` (~0.02 per entry), so at the prompt's
#: rate ``U Vᵀ`` moves by ~3% in a whole run; Adam: each entry moves ~lr per step, so at the prompt's
#: 0.3 ``U Vᵀ`` reaches ±20 in 30 steps. Measured figures: ``docs/mpt_mechanics.md``.
DEFAULT_GROUP_LR: dict[str, dict[str, float]] = {"sgd": {"task_factors": 10.0}, "adamw": {"task_factors": 0.1}}


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
        group_lr: learning-rate multiplier per prompt parameter group (``shared`` = ``P*``,
            ``task_factors`` = ``U, V``, ``task_prompts`` = vanilla prompts, ``other`` = e.g. UPT's
            mapping). MPT's factors start at ``U Vᵀ ≈ 1`` while ``P*`` is small, so one rate does
            not suit both: under SGD the factors' gradients are scaled by ``P*`` (they need a
            *larger* rate to move at all), under Adam each entry moves by ~lr per step (at lr 0.3
            ``U Vᵀ`` explodes; they need a *smaller* one). Groups not given use
            :data:`DEFAULT_GROUP_LR` for the optimizer (measured: see ``docs/mpt_mechanics.md``),
            other groups 1.
    """

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 0.3
    weight_decay: float = 1e-5
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    fused: bool = True
    decay_1d: bool = False
    group_lr: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        from .errors import ConfigError

        for name, mult in self.group_lr.items():
            if name not in PARAM_GROUPS:
                raise ConfigError(f"train.optim.group_lr: unknown parameter group {name!r}; valid: {', '.join(PARAM_GROUPS)}")
            if not mult > 0:
                raise ConfigError(f"train.optim.group_lr.{name} must be > 0, found {mult}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warm-up for ``warmup_steps``, then ``name`` decay
    to ``min_lr_ratio × lr`` at the last step."""

    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0


def group_lr_multiplier(cfg: OptimConfig, group: str) -> float:
    """The learning-rate multiplier of ``group``: ``cfg.group_lr``, else the optimizer's default, else 1."""
    if group in cfg.group_lr:
        return float(cfg.group_lr[group])
    return float(DEFAULT_GROUP_LR.get(cfg.name, {}).get(group, 1.0))


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig,
                    named_groups: Mapping[str, Sequence[torch.nn.Parameter]] | None = None) -> torch.optim.Optimizer:
    """AdamW or SGD over ``params`` (only those with ``requires_grad``).

    ``named_groups`` maps prompt parameter groups (``shared``, ``task_factors``, ...) to their
    parameters; each gets ``lr × cfg.group_lr[group]``. Parameters in no named group are ``other``.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: check which prompt groups the stage trains")
    on_cuda = all(p.is_cuda for p in params)
    owner: dict[int, str] = {}
    for name, members in (named_groups or {}).items():
        for p in members:
            owner.setdefault(id(p), name)
    groups = []
    for name in PARAM_GROUPS:
        members = [p for p in params if owner.get(id(p), "other") == name]
        lr = cfg.lr * group_lr_multiplier(cfg, name)
        decay = [p for p in members if cfg.decay_1d or p.dim() > 1]
        no_decay = [p for p in members if not (cfg.decay_1d or p.dim() > 1)]
        groups.append({"params": decay, "weight_decay": cfg.weight_decay, "lr": lr, "group": name})
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr, "group": name})
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
