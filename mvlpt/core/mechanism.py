"""Figures that show whether MPT's mechanism is active, per prompt module.

A decomposed prompt only does its job if the task factors move away from their
initialisation (otherwise every task prompt is ``P*``), the task prompts of different tasks
differ, and the prompt stays on the scale of the backbone's own inputs. For every core
prompt module of a task model, :func:`mechanism_stats` returns (keys ``mech/<module>/...``):

* ``factor_dev/<task>`` — ``‖U_k V_kᵀ − M⁰_k‖ / max(‖M⁰_k‖, ‖U_k V_kᵀ‖)``: how far task ``k``'s
  task matrix moved from its value at the start of the run (decomposed prompts);
  ``prompt_dev/<task>`` — the same for a vanilla prompt ``P_k``;
* ``pairwise_dist`` — mean over task pairs of ``‖P_i − P_j‖ / mean_k ‖P_k‖`` (and
  ``pairwise_dist_init``, the same at the start of the run, e.g. what random init gives);
* ``row_norm`` — mean L2 norm of a prompt token (a row of ``P_k``), over tasks (and layers);
* ``norm_ratio`` — ``row_norm`` over the backbone's reference norm for that module (e.g. its
  mean token-embedding row norm), when the head provides one.

The loop logs these at every evaluation (``split: "mechanism"`` in ``metrics.jsonl``) and
writes the last ones to ``mechanism.json`` in the run directory.
"""

from __future__ import annotations

import copy
import itertools
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from .prompts import DecomposedPrompt, PromptModule
from .runtime import freeze

EPS = 1e-12


def _all_prompts(module: PromptModule) -> Tensor:
    """``P_k`` of every task ``(T, *shape)``."""
    return module(torch.arange(module.num_tasks, device=next(module.parameters()).device)).detach().float()


def _task_matrices(module: DecomposedPrompt) -> Tensor:
    return torch.matmul(module.task_u.detach().float(), module.task_v.detach().float().transpose(-1, -2))


def pairwise_distance(prompts: Tensor) -> float | None:
    """Mean over pairs ``i < j`` of ``‖P_i − P_j‖ / mean_k ‖P_k‖`` (None for a single task)."""
    t = prompts.shape[0]
    if t < 2:
        return None
    flat = prompts.reshape(t, -1)
    scale = flat.norm(dim=1).mean().clamp_min(EPS)
    d = [float((flat[i] - flat[j]).norm() / scale) for i, j in itertools.combinations(range(t), 2)]
    return sum(d) / len(d)


def mean_row_norm(prompts: Tensor) -> float:
    """Mean L2 norm of a prompt token (last dim) over tasks, layers and positions."""
    return float(prompts.norm(dim=-1).mean())


def relative_change(now: Tensor, start: Tensor) -> Tensor:
    """Per leading index: ``‖now − start‖ / max(‖start‖, ‖now‖)``."""
    n = now.reshape(now.shape[0], -1)
    s = start.reshape(start.shape[0], -1)
    denom = torch.maximum(n.norm(dim=1), s.norm(dim=1)).clamp_min(EPS)
    return (n - s).norm(dim=1) / denom


def module_stats(module: PromptModule, start: PromptModule | None, task_names: Sequence[str],
                 reference_norm: float | None = None) -> dict[str, float]:
    """The figures of one prompt module (``start``: a copy holding its state at the start of the run)."""
    out: dict[str, float] = {}
    names = list(task_names) if len(task_names) == module.num_tasks else [str(k) for k in range(module.num_tasks)]
    prompts = _all_prompts(module)
    if start is not None:
        start_prompts = _all_prompts(start)
        if isinstance(module, DecomposedPrompt) and isinstance(start, DecomposedPrompt):
            dev, key = relative_change(_task_matrices(module), _task_matrices(start)), "factor_dev"
        else:
            dev, key = relative_change(prompts, start_prompts), "prompt_dev"
        for name, v in zip(names, dev.tolist()):
            out[f"{key}/{name}"] = round(float(v), 6)
        out[f"{key}_mean"] = round(float(dev.mean()), 6)
        init_dist = pairwise_distance(start_prompts)
        if init_dist is not None:
            out["pairwise_dist_init"] = round(init_dist, 6)
    dist = pairwise_distance(prompts)
    if dist is not None:
        out["pairwise_dist"] = round(dist, 6)
    out["row_norm"] = round(mean_row_norm(prompts), 6)
    if reference_norm:
        out["norm_ratio"] = round(out["row_norm"] / reference_norm, 6)
    return out


def snapshot(modules: Mapping[str, nn.Module]) -> dict[str, PromptModule]:
    """Frozen copies of the core prompt modules (the state at the start of a run)."""
    out = {}
    for name, m in modules.items():
        if isinstance(m, PromptModule):
            out[name] = freeze(copy.deepcopy(m), eval_mode=False)
    return out


@torch.no_grad()
def mechanism_stats(modules: Mapping[str, nn.Module], start: Mapping[str, PromptModule] | None,
                    task_names: Sequence[str], reference_norms: Mapping[str, float] | None = None) -> dict[str, float]:
    """``mech/<module>/<figure>`` for every core prompt module in ``modules`` (see the module docs)."""
    out: dict[str, float] = {}
    refs = dict(reference_norms or {})
    for name, m in modules.items():
        if not isinstance(m, PromptModule):
            continue
        s = (start or {}).get(name)
        if s is not None:
            s = s.to(next(m.parameters()).device)
        for k, v in module_stats(m, s, task_names, refs.get(name)).items():
            out[f"mech/{name}/{k}"] = v
    return out
