"""Target initialisation from a trained source prompt, and conversion to/from PEFT's MPT tensors."""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

from .errors import CheckpointError, ShapeMismatchError
from .prompts import DecomposedPrompt, VanillaPrompt

#: ways to initialise a target prompt from a source (``source_init`` in configs)
SOURCE_INIT_MODES = ("mean", "task", "shared_only")


def _expect(name: str, found: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(found.shape) != tuple(expected):
        raise ShapeMismatchError(
            f"source tensor {name!r} has shape {tuple(found.shape)} but the target prompt expects {tuple(expected)}; "
            "the source was trained for another prompt length, width, rank or layer count"
        )


@torch.no_grad()
def init_from_source(
    target: DecomposedPrompt,
    source_state: Mapping[str, Tensor],
    mode: str = "mean",
    source_task: int = 0,
) -> None:
    """Initialise ``target`` from a source :class:`DecomposedPrompt` state dict.

    Args:
        target: the prompt to initialise (any number of target tasks).
        source_state: ``{"shared", "task_u", "task_v"}`` of a trained source prompt.
        mode: ``"mean"`` — ``P*`` plus the mean of the source factors (MPT's default);
            ``"task"`` — ``P*`` plus the factors of source task ``source_task``;
            ``"shared_only"`` — ``P*`` only, factors set so that ``U Vᵀ`` is all ones.
        source_task: the source task used by ``mode="task"``.
    """
    if mode not in SOURCE_INIT_MODES:
        raise ValueError(f"unknown source init mode {mode!r}; expected one of {SOURCE_INIT_MODES}")
    missing = [k for k in ("shared", "task_u", "task_v") if k not in source_state]
    if missing:
        raise CheckpointError(f"source prompt state lacks {missing}; found keys {sorted(source_state)}")
    shared = source_state["shared"]
    _expect("shared", shared, target.shape)
    src_u, src_v = source_state["task_u"], source_state["task_v"]
    n_src = src_u.shape[0]
    _expect("task_u", src_u, (n_src, *target.task_u.shape[1:]))
    _expect("task_v", src_v, (n_src, *target.task_v.shape[1:]))
    target.shared.copy_(shared)
    if mode == "mean":
        u, v = src_u.mean(0), src_v.mean(0)
    elif mode == "task":
        if not 0 <= source_task < n_src:
            raise ValueError(f"source_task {source_task} is out of range: the source has {n_src} tasks")
        u, v = src_u[source_task], src_v[source_task]
    else:
        u = torch.full_like(target.task_u[0], 1.0 / math.sqrt(target.rank))
        v = torch.full_like(target.task_v[0], 1.0 / math.sqrt(target.rank))
    target.task_u.copy_(u.unsqueeze(0).expand_as(target.task_u))
    target.task_v.copy_(v.unsqueeze(0).expand_as(target.task_v))


@torch.no_grad()
def init_vanilla_from_source(
    target: VanillaPrompt,
    source_state: Mapping[str, Tensor],
    source_task: int | None = None,
) -> None:
    """Initialise a vanilla ``target`` from a source :class:`VanillaPrompt` state dict (``{"prompts"}``).

    MVLPT's transfer: the source stage trains one prompt shared by all source tasks; every target
    task starts from exactly that prompt. A source holding several prompts (e.g. a teachers run)
    needs ``source_task`` to pick one.

    Args:
        target: the prompt to initialise (any number of target tasks; each gets the same copy).
        source_state: ``{"prompts": (T_src, *shape)}`` of a trained vanilla source prompt.
        source_task: the source prompt to copy; ``None`` requires a single-prompt source.
    """
    if "prompts" not in source_state:
        found = sorted(source_state)
        hint = (" (a decomposed MPT source: train the target with a decomposed prompt, or train the source "
                "with source_mode: mvlpt)") if "shared" in source_state else ""
        raise CheckpointError(f"source prompt state lacks a vanilla 'prompts' tensor{hint}; found keys {found}")
    src = source_state["prompts"]
    n_src = src.shape[0] if src.dim() >= 1 else 0
    _expect("prompts", src, (n_src, *target.shape))
    if source_task is None:
        if n_src != 1:
            raise CheckpointError(
                f"the source holds {n_src} vanilla prompts, not one shared prompt; pick one with "
                "prompt.source_init=task and prompt.source_task=<id>")
        source_task = 0
    if not 0 <= source_task < n_src:
        raise ValueError(f"source_task {source_task} is out of range: the source has {n_src} prompts")
    target.prompts.copy_(src[source_task].unsqueeze(0).expand_as(target.prompts))


def to_peft_tensors(prompt: DecomposedPrompt) -> dict[str, Tensor]:
    """Our decomposed prompt as PEFT ``MultitaskPromptEmbedding`` adapter tensors.

    PEFT: ``prompt_embeddings`` (l, d) = ``P*``; ``prefix_task_cols`` (T, l, r) = ``U``;
    ``prefix_task_rows`` (T, r, d) = ``Vᵀ``. Only single prompts (not stacks) exist in PEFT.
    """
    if prompt.layers is not None:
        raise ShapeMismatchError(f"PEFT holds one (l, d) prompt; this prompt is a stack of shape {prompt.shape}")
    return {
        "prompt_embeddings": prompt.shared.detach().clone(),
        "prefix_task_cols": prompt.task_u.detach().clone(),
        "prefix_task_rows": prompt.task_v.detach().transpose(-1, -2).contiguous(),
    }


def from_peft_tensors(tensors: Mapping[str, Tensor]) -> DecomposedPrompt:
    """Build a :class:`DecomposedPrompt` holding PEFT MPT adapter tensors (inverse of :func:`to_peft_tensors`)."""
    missing = [k for k in ("prompt_embeddings", "prefix_task_cols", "prefix_task_rows") if k not in tensors]
    if missing:
        raise CheckpointError(f"PEFT MPT tensors lack {missing}; found keys {sorted(tensors)}")
    emb, cols, rows = tensors["prompt_embeddings"], tensors["prefix_task_cols"], tensors["prefix_task_rows"]
    l, d = emb.shape
    t, l2, r = cols.shape
    if l2 != l or tuple(rows.shape) != (t, r, d):
        raise ShapeMismatchError(
            f"inconsistent PEFT tensors: prompt_embeddings {tuple(emb.shape)}, prefix_task_cols {tuple(cols.shape)}, "
            f"prefix_task_rows {tuple(rows.shape)}; expected (l, d), (T, l, r), (T, r, d)"
        )
    prompt = DecomposedPrompt(t, (l, d), rank=r)
    with torch.no_grad():
        prompt.shared.copy_(emb)
        prompt.task_u.copy_(cols)
        prompt.task_v.copy_(rows.transpose(-1, -2))
    return prompt
