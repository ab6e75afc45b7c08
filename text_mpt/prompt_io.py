"""Prompt modules from saved runs: rebuild, select tasks, check widths, load teachers.

Runs save their prompt module as ``prompt.<param>`` in ``prompts.safetensors`` and the
resolved run config (with ``meta.task_names`` and ``meta.d_model``) in ``config.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from mvlpt.core.checkpoint import load_run_prompts, sub_state
from mvlpt.core.errors import CheckpointError, ConfigError, ShapeMismatchError
from mvlpt.core.prompts import DecomposedPrompt, PromptModule, VanillaPrompt

#: name of the prompt module in checkpoints (tensor prefix ``prompt.``)
PROMPT_KEY = "prompt"


def prompt_tensors(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``prompt.*`` tensors of a checkpoint, without the prefix."""
    pre = PROMPT_KEY + "."
    sub = sub_state(tensors, pre)
    if not sub:
        raise CheckpointError(f"checkpoint has no '{pre}*' tensors; found {sorted(tensors)[:8]}")
    return sub


def prompt_from_tensors(tensors: Mapping[str, Tensor]) -> PromptModule:
    """Rebuild the saved prompt module (vanilla or decomposed) from its ``prompt.*`` tensors."""
    sub = prompt_tensors(tensors)
    if set(sub) == {"prompts"}:
        t = sub["prompts"]
        prompt: PromptModule = VanillaPrompt(t.shape[0], tuple(t.shape[1:]))
    elif set(sub) == {"shared", "task_u", "task_v"}:
        prompt = DecomposedPrompt(sub["task_u"].shape[0], tuple(sub["shared"].shape), rank=sub["task_u"].shape[-1])
    else:
        raise CheckpointError(f"unrecognised prompt tensors {sorted(sub)}; expected 'prompts' (vanilla) or "
                              "'shared', 'task_u', 'task_v' (decomposed)")
    prompt.load_state_dict({k: v.float() for k, v in sub.items()})
    prompt.set_trainable([])
    return prompt


@torch.no_grad()
def select_tasks(prompt: PromptModule, ids: Sequence[int]) -> PromptModule:
    """A new prompt module holding only tasks ``ids`` (in that order); shared parameters are copied."""
    idx = torch.tensor(list(ids), dtype=torch.long)
    if isinstance(prompt, VanillaPrompt):
        out: PromptModule = VanillaPrompt(len(ids), prompt.shape)
        out.prompts.copy_(prompt.prompts.index_select(0, idx.to(prompt.prompts.device)))
    elif isinstance(prompt, DecomposedPrompt):
        out = DecomposedPrompt(len(ids), prompt.shape, rank=prompt.rank)
        out.shared.copy_(prompt.shared)
        out.task_u.copy_(prompt.task_u.index_select(0, idx.to(prompt.task_u.device)))
        out.task_v.copy_(prompt.task_v.index_select(0, idx.to(prompt.task_v.device)))
    else:
        raise TypeError(f"cannot select tasks of a {type(prompt).__name__}")
    out.set_trainable([])
    return out


def run_meta(config: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    meta = config.get("meta")
    if not isinstance(meta, Mapping) or "task_names" not in meta:
        raise CheckpointError(f"{path}: config.json has no meta.task_names; is this a text-mpt run?")
    return dict(meta)


def check_width(tensors: Mapping[str, Tensor], d_model: int, path: str | Path, what: str, backbone: str) -> None:
    """Refuse prompts trained on a backbone of another width, naming both widths."""
    for k, v in prompt_tensors(tensors).items():
        if k in ("prompts", "shared") and v.shape[-1] != d_model:
            raise ShapeMismatchError(
                f"{what} {path} holds prompts of width {v.shape[-1]} but backbone {backbone!r} has d_model={d_model}; "
                "it was trained on a T5 of another size: use the same backbone as that run"
            )


def task_indices(wanted: Sequence[str], available: Sequence[str], path: str | Path, what: str) -> list[int]:
    """Positions of ``wanted`` task names among ``available`` (clear error for a missing one)."""
    missing = [t for t in wanted if t not in available]
    if missing:
        raise ConfigError(f"{what} {path} has no prompt for task(s) {missing}; it was trained on {list(available)}")
    return [list(available).index(t) for t in wanted]


def load_teacher_prompt(path: str, task_names: Sequence[str], d_model: int, backbone: str,
                        student_length: int, need_same_length: bool) -> VanillaPrompt:
    """The teachers run's vanilla prompts for ``task_names`` (in that order)."""
    tensors, config = load_run_prompts(path)
    if f"{PROMPT_KEY}.prompts" not in tensors:
        raise CheckpointError(f"teacher_path {path} is not a teachers run (vanilla prompts '{PROMPT_KEY}.prompts'); "
                              f"found {sorted(tensors)}")
    check_width(tensors, d_model, path, "teacher_path", backbone)
    meta = run_meta(config, path)
    ids = task_indices(task_names, meta["task_names"], path, "teachers run")
    prompt = select_tasks(prompt_from_tensors(tensors), ids)
    if need_same_length and prompt.length != student_length:
        raise ConfigError(f"teacher prompts have length {prompt.length} but the student's is {student_length}: the "
                          "hidden-state MSE needs equal lengths (set train.distill.mse_weight=0 or prompt.length)")
    assert isinstance(prompt, VanillaPrompt)
    return prompt
