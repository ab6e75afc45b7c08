"""Configuration of the one training loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .distill import DistillConfig
from .errors import ConfigError
from .health import HealthConfig
from .optim import OptimConfig, ScheduleConfig
from .sampling import SamplingConfig


@dataclass
class TrainConfig:
    """Settings of :class:`mvlpt.core.trainer.Trainer` (every stage, every head).

    Attributes:
        max_steps: optimizer steps.
        batch_size: per-process batch size (the global batch is ``batch_size × world_size``).
        eval_batch_size: evaluation batch size (0 = ``batch_size``).
        grad_accum_steps: micro-batches per optimizer step.
        clip_grad_norm: max gradient norm (0 = no clipping).
        clip_grad_scope: ``per_task`` clips each task's own parameters (its vanilla prompt, or its
            factors ``U_k, V_k``) separately and the shared ones (``P*``, mappings) together, so one
            task's large gradient does not shrink another's (independent teachers stay independent);
            ``global`` clips the norm over all trainable parameters at once.
        precision: ``auto`` = bf16 autocast on CUDA, fp32 on CPU; ``fp16`` uses a GradScaler.
            Weights stay fp32 (never pure fp16).
        eval_every / save_every: steps between evaluations / checkpoints (0 = at the end only).
        eval_at_start: also evaluate before the first step (logged as step 0); the start is then a
            checkpoint-selection candidate (``best`` = step 0 when no later evaluation beats it).
        keep_last: step checkpoints kept on disk (the best one is kept separately).
        log_every: steps between metric lines.
        seed: seeds model init, data order and augmentation.
        deterministic: ``torch.use_deterministic_algorithms`` and no cuDNN autotuning.
        num_workers: data-loading worker processes.
        nonfinite: on a NaN/inf loss, ``stop`` (error naming the step; last good checkpoint kept)
            or ``skip`` the batch (counted; stop after ``max_skipped`` in a row).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        select_metric / select_mode: metric (from the task model's ``compute_metrics``) used to
            pick the best checkpoint, and whether larger is better.
        select_ties: which checkpoint wins a tie on ``select_metric``: ``first`` (the earliest, as
            Keras and the Hugging Face Trainer keep it) or ``last`` (the latest). On a small
            validation set (few-shot: a few images per class) the score is often flat over the
            run, and ``first`` then reports the checkpoint nearest the initialisation.
        progress: show a tqdm bar.
        tensorboard: also log to TensorBoard when it is installed.
        health: end-of-stage health checks (chance-level tasks, collapsed class texts, prompt norm).
    """

    max_steps: int = 1000
    batch_size: int = 32
    eval_batch_size: int = 0
    grad_accum_steps: int = 1
    clip_grad_norm: float = 1.0
    clip_grad_scope: Literal["per_task", "global"] = "per_task"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    eval_every: int = 0
    eval_at_start: bool = False
    save_every: int = 0
    keep_last: int = 2
    log_every: int = 10
    seed: int = 0
    deterministic: bool = False
    num_workers: int = 0
    nonfinite: Literal["stop", "skip"] = "stop"
    max_skipped: int = 10
    device: str = "auto"
    select_metric: str = "score"
    select_mode: Literal["max", "min"] = "max"
    select_ties: Literal["first", "last"] = "first"
    progress: bool = True
    tensorboard: bool = True
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    health: HealthConfig = field(default_factory=HealthConfig)

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, found {getattr(self, name)}")
        for name in ("eval_every", "save_every", "keep_last", "log_every", "num_workers", "eval_batch_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, found {getattr(self, name)}")
        if self.schedule.warmup_steps > self.max_steps:
            raise ConfigError(
                f"train.schedule.warmup_steps ({self.schedule.warmup_steps}) exceeds train.max_steps ({self.max_steps})"
            )
