"""Soft-prompt parameter modules shared by every head.

Both modules map per-sample task ids to prompts::

    prompt(task_ids: LongTensor[B] | int) -> Tensor[B, *shape]

where ``shape`` is ``(l, d)`` (one prompt of ``l`` tokens of width ``d``) or
``(L, l, d)`` (a *stack*, e.g. one prompt per transformer layer for deep visual
prompts).

* :class:`VanillaPrompt` holds an independent prompt per task (teachers and
  single-task baselines).
* :class:`DecomposedPrompt` is MPT's ``P_k = P* ⊙ (U_k V_kᵀ)``: one shared prompt
  ``P*`` and rank-``r`` factors ``U_k`` (l×r) and ``V_k`` (d×r) per task; a stack
  has per-layer factors.

Parameters are grouped by name (``shared``, ``task_factors``, ``task_prompts``)
so that a stage can choose which ones train (:meth:`PromptModule.set_trainable`).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .errors import ShapeMismatchError, TaskIdError

#: Standard deviation of the random part of every initialisation.
INIT_STD = 0.02


def _as_task_ids(task_ids: Tensor | int, num_tasks: int, device: torch.device) -> Tensor:
    """Validate task ids and return them as ``LongTensor[B]`` on ``device``."""
    if isinstance(task_ids, bool):
        raise TaskIdError(f"task ids must be an int or a LongTensor of shape (B,), found a bool ({task_ids})")
    if isinstance(task_ids, int):
        task_ids = torch.tensor([task_ids], device=device)
    if not isinstance(task_ids, Tensor):
        raise TaskIdError(f"task ids must be an int or a LongTensor of shape (B,), found {type(task_ids).__name__}")
    if task_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TaskIdError(f"task ids must have an integer dtype (expected torch.int64), found {task_ids.dtype}")
    if task_ids.dim() != 1:
        raise TaskIdError(f"task ids must have shape (B,), found shape {tuple(task_ids.shape)}")
    # the range check reads the ids to the host: on CPU it is free; on an accelerator indexing asserts on
    # a bad id anyway, so the check would only add a device sync to every prompt forward
    if task_ids.device.type == "cpu" and task_ids.numel() and (int(task_ids.min()) < 0 or int(task_ids.max()) >= num_tasks):
        bad = task_ids[(task_ids < 0) | (task_ids >= num_tasks)][0].item()
        raise TaskIdError(f"task id {bad} is out of range: this prompt has {num_tasks} task(s), valid ids are 0..{num_tasks - 1}")
    return task_ids.to(device=device, dtype=torch.long)


class PromptModule(nn.Module):
    """Common interface of prompt modules: ``forward(task_ids) -> (B, *shape)``."""

    num_tasks: int
    shape: tuple[int, ...]

    #: names of the parameter groups this module has
    groups: tuple[str, ...] = ()

    @property
    def length(self) -> int:
        return self.shape[-2]

    @property
    def dim(self) -> int:
        return self.shape[-1]

    @property
    def layers(self) -> int | None:
        return self.shape[0] if len(self.shape) == 3 else None

    def group_parameters(self, group: str) -> list[nn.Parameter]:
        """Parameters of one named group."""
        if group not in self.groups:
            raise KeyError(f"unknown parameter group {group!r}; this module has {list(self.groups)}")
        return [getattr(self, name) for name in self._group_members()[group]]

    def _group_members(self) -> dict[str, list[str]]:
        raise NotImplementedError

    def set_trainable(self, groups: Iterable[str]) -> None:
        """Make exactly the parameters of ``groups`` trainable; freeze the rest."""
        groups = list(groups)
        for g in groups:
            if g not in self.groups:
                raise KeyError(f"unknown parameter group {g!r}; this module has {list(self.groups)}")
        for g in self.groups:
            for p in self.group_parameters(g):
                p.requires_grad_(g in groups)

    def trainable_parameters_per_task(self) -> dict[str, int]:
        """Trainable parameter counts: ``per_task`` (owned by each task) and ``shared`` (shared by all)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, shape={self.shape}"


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or any(s <= 0 for s in shape):
        raise ShapeMismatchError(f"prompt shape must be (l, d) or (layers, l, d) with positive sizes, found {shape}")
    return shape


def tile_embeddings(token_embeddings: Tensor, length: int) -> Tensor:
    """Repeat (or cut) ``(n, d)`` token embeddings to ``(length, d)``; used for text initialisation."""
    if token_embeddings.dim() != 2 or token_embeddings.shape[0] == 0:
        raise ShapeMismatchError(f"token embeddings must have shape (n>0, d), found {tuple(token_embeddings.shape)}")
    reps = math.ceil(length / token_embeddings.shape[0])
    return token_embeddings.repeat(reps, 1)[:length].clone()


class VanillaPrompt(PromptModule):
    """An independent prompt per task: ``prompts[k]`` of shape ``shape``.

    Args:
        num_tasks: number of tasks T (1 for a single-task prompt).
        shape: ``(l, d)`` or ``(layers, l, d)``.
        init_std: std of the normal initialisation (mean 0).
    """

    groups = ("task_prompts",)

    def __init__(self, num_tasks: int, shape: Sequence[int], init_std: float = INIT_STD):
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, found {num_tasks}")
        self.num_tasks = int(num_tasks)
        self.shape = _check_shape(shape)
        self.prompts = nn.Parameter(torch.randn(self.num_tasks, *self.shape) * init_std)

    def _group_members(self) -> dict[str, list[str]]:
        return {"task_prompts": ["prompts"]}

    def forward(self, task_ids: Tensor | int) -> Tensor:
        ids = _as_task_ids(task_ids, self.num_tasks, self.prompts.device)
        return self.prompts.index_select(0, ids)

    @torch.no_grad()
    def init_from_embeddings(self, token_embeddings: Tensor, task: int | None = None) -> None:
        """Initialise prompt(s) from text token embeddings ``(n, d)`` (tiled to ``l``; every layer of a stack)."""
        tiled = tile_embeddings(token_embeddings.to(self.prompts), self.length)
        target = self.prompts if task is None else self.prompts[task : task + 1]
        target.copy_(tiled.expand_as(target))

    def trainable_parameters_per_task(self) -> dict[str, int]:
        per = int(math.prod(self.shape)) if self.prompts.requires_grad else 0
        return {"per_task": per, "shared": 0}


class DecomposedPrompt(PromptModule):
    """MPT's decomposed prompt ``P_k = P* ⊙ (U_k V_kᵀ)``.

    Parameters (``L`` present only for a stack):

    * ``shared``  ``P*``: ``([L,] l, d)`` — group ``shared``
    * ``task_u``  ``U``:  ``(T, [L,] l, r)`` — group ``task_factors``
    * ``task_v``  ``V``:  ``(T, [L,] d, r)`` — group ``task_factors``

    Random initialisation (``factor_init``):

    * ``ones`` (default): ``P* ~ N(0, init_std²)`` and every entry of ``U`` and ``V``
      ``~ N(1/√r, init_std²)``, so that ``(U Vᵀ)_ij = Σ_r U_ir V_jr ≈ r · (1/√r)² = 1`` at
      step 0: the task matrix starts near all-ones and ``P_k ≈ P*`` rather than near zero.
    * ``peft``: PEFT's ``MultitaskPromptEmbedding`` init, ``U, V ~ N(0, init_std²)`` (``P_k ≈ 0``
      at step 0; the factors must grow before the prompt acts).

    With ``U, V ≈ 1`` the factors' gradients carry a factor ``P*`` (small next to 1), so under
    SGD they move far more slowly than ``P*``; under Adam every entry moves by about the
    learning rate per step and ``U Vᵀ`` grows quadratically. The optimiser therefore gives the
    ``task_factors`` group its own learning-rate multiplier (``optim.group_lr``; see
    :mod:`mvlpt.core.optim`), and :mod:`mvlpt.core.mechanism` logs how far the factors moved.
    """

    groups = ("shared", "task_factors")
    FACTOR_INITS = ("ones", "peft")

    def __init__(self, num_tasks: int, shape: Sequence[int], rank: int = 1, init_std: float = INIT_STD,
                 factor_init: str = "ones"):
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, found {num_tasks}")
        if rank < 1:
            raise ValueError(f"rank must be >= 1, found {rank}")
        self.num_tasks = int(num_tasks)
        self.shape = _check_shape(shape)
        self.rank = int(rank)
        lead = self.shape[:-2]
        l, d = self.shape[-2:]
        if factor_init not in self.FACTOR_INITS:
            raise ValueError(f"unknown factor_init {factor_init!r}; expected one of {self.FACTOR_INITS}")
        mean = 1.0 / math.sqrt(rank) if factor_init == "ones" else 0.0
        self.shared = nn.Parameter(torch.randn(*self.shape) * init_std)
        self.task_u = nn.Parameter(mean + torch.randn(self.num_tasks, *lead, l, rank) * init_std)
        self.task_v = nn.Parameter(mean + torch.randn(self.num_tasks, *lead, d, rank) * init_std)

    def _group_members(self) -> dict[str, list[str]]:
        return {"shared": ["shared"], "task_factors": ["task_u", "task_v"]}

    def task_matrix(self, task_ids: Tensor | int) -> Tensor:
        """``U_k V_kᵀ`` for each sample: ``(B, [L,] l, d)``."""
        ids = _as_task_ids(task_ids, self.num_tasks, self.shared.device)
        u = self.task_u.index_select(0, ids)
        v = self.task_v.index_select(0, ids)
        return torch.matmul(u, v.transpose(-1, -2))

    def forward(self, task_ids: Tensor | int) -> Tensor:
        return self.shared.unsqueeze(0) * self.task_matrix(task_ids)

    @torch.no_grad()
    def init_from_embeddings(self, token_embeddings: Tensor) -> None:
        """Set ``P*`` from text token embeddings ``(n, d)`` (tiled to ``l``, copied to every layer of a stack)."""
        tiled = tile_embeddings(token_embeddings.to(self.shared), self.length)
        self.shared.copy_(tiled.expand_as(self.shared))

    def trainable_parameters_per_task(self) -> dict[str, int]:
        lead = int(math.prod(self.shape[:-2])) if len(self.shape) == 3 else 1
        l, d = self.shape[-2:]
        per = lead * (l + d) * self.rank if self.task_u.requires_grad else 0
        shared = int(self.shared.numel()) if self.shared.requires_grad else 0
        return {"per_task": per, "shared": shared}


def build_prompt(kind: str, num_tasks: int, shape: Sequence[int], rank: int = 1, init_std: float = INIT_STD,
                 factor_init: str = "ones") -> PromptModule:
    """Factory: ``kind`` is ``"vanilla"`` or ``"decomposed"`` (``factor_init``: ``ones`` or ``peft``)."""
    if kind == "vanilla":
        return VanillaPrompt(num_tasks, shape, init_std=init_std)
    if kind == "decomposed":
        return DecomposedPrompt(num_tasks, shape, rank=rank, init_std=init_std, factor_init=factor_init)
    raise ValueError(f"unknown prompt kind {kind!r}; expected 'vanilla' or 'decomposed'")
