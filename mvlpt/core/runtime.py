"""Runtime helpers both heads and the loop share: seeding, the device, moving batches, autocast, freezing.

Torch only (no head, no training state): the training loop (:mod:`mvlpt.core.trainer`), evaluation
without training (:mod:`mvlpt.core.evaluation`) and the heads' predictors import these.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any, ContextManager, TypeVar

import numpy as np
import torch
from torch import nn

from .distributed import DistInfo

M = TypeVar("M", bound=nn.Module)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """``auto`` → this rank's GPU when CUDA is available, else the CPU; any other name as given (a CUDA
    device on a machine without CUDA is refused)."""
    info = info if info is not None else DistInfo()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank)
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available on this machine; use 'auto' or 'cpu'")
    return dev


def move_to(obj: Any, device: torch.device, non_blocking: bool = True) -> Any:
    """Move every tensor inside nested dicts/lists/tuples to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: move_to(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device, non_blocking) for v in obj)
    return obj


def resolve_precision(precision: str, device: torch.device) -> str:
    """``train.precision``: ``auto`` → ``bf16`` on CUDA, ``fp32`` elsewhere; others as given."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> ContextManager[Any]:
    """Autocast for a *resolved* precision (``fp32``: none; ``bf16`` / ``fp16`` on ``device``'s type).

    On CPU, half-precision attention also selects the math SDPA kernel: the fused CPU kernel's backward
    in bf16 is several times slower for the short sequences of prompt tuning (measured in
    ``benchmarks/clip_train_throughput.py``: the whole MVPT step 2x faster)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type != "cpu":
        return torch.autocast(device_type=device.type, dtype=dtype)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device_type="cpu", dtype=dtype))
    stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    return stack


def freeze(module: M, eval_mode: bool = True) -> M:
    """``requires_grad=False`` on every parameter of ``module`` (in place) and, with ``eval_mode``
    (default), eval mode; returns ``module``. The one way frozen backbones and teachers are frozen."""
    module.requires_grad_(False)
    return module.eval() if eval_mode else module


__all__ = ["autocast", "freeze", "move_to", "resolve_device", "resolve_precision", "seed_everything"]
