"""The contract between a head (T5, CLIP, ...) and the one training loop.

A head supplies a :class:`TaskModel`: an ``nn.Module`` that holds a frozen backbone
and its prompt module(s), and maps a batch to a :class:`StepOutput`. The loop
knows nothing else about the head.

Batches are ``dict[str, Any]`` and always carry ``"task_ids"``: ``LongTensor[B]``.
The loop moves every tensor in a batch (also inside lists/dicts) to the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

Batch = dict[str, Any]


@dataclass
class StepOutput:
    """What a task model returns for a batch.

    Attributes:
        loss: scalar task loss (mean over the batch).
        logits: ``(B, C)`` class logits for KL distillation (optional).
        logit_mask: bool ``(B, C)``, True where a class belongs to the sample's task.
        hidden: ``(B, ..., h)`` hidden states for MSE distillation (optional).
        hidden_mask: bool over the leading dims of ``hidden`` (optional).
        metrics: extra scalars to log (floats).
    """

    loss: Tensor
    logits: Tensor | None = None
    logit_mask: Tensor | None = None
    hidden: Tensor | None = None
    hidden_mask: Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class TaskModel(nn.Module):
    """Base class of a head's task model.

    Subclasses implement :meth:`step`, :meth:`predict` and :meth:`compute_metrics`,
    and expose their prompt modules through :meth:`prompt_modules`.
    Everything that is not a prompt parameter (or a small head-specific trainable
    module, e.g. UPT's mapping) must have ``requires_grad=False``.
    """

    #: names of the tasks, index = task id
    task_names: list[str]

    def step(self, batch: Batch) -> StepOutput:
        """Forward a training batch: loss plus what distillation needs."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> StepOutput:
        """``forward`` is :meth:`step`, so DistributedDataParallel's hooks see the training step."""
        return self.step(batch)

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[dict[str, Any]]:
        """Evaluation: one JSON-able record per sample. Records must hold ``"task_id"``
        and an ``"index"`` (the sample's position in its evaluation set) so that
        records gathered from several ranks can be de-duplicated."""
        raise NotImplementedError

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics from the records of a whole evaluation set. Keys like
        ``"<task>/accuracy"`` and an overall ``"score"`` used for best-checkpoint selection."""
        raise NotImplementedError

    def prompt_modules(self) -> Mapping[str, nn.Module]:
        """The trainable-prompt modules by name (saved in checkpoints)."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> "TaskModel":
        """Only prompt modules follow ``mode``; frozen backbones stay in eval mode
        (dropout off) unless a head overrides this."""
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self

    def frozen_modules(self) -> Iterable[nn.Module]:
        """Backbone modules kept in eval mode during training."""
        return ()

    # ------------------------------------------------------------------ optional: figures and checks
    #: 100 when the head's accuracies are percentages, 1 when fractions (health-check margins)
    metric_scale: float = 100.0

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by group (``shared``, ``task_factors``, ``task_prompts``; the rest is
        ``other``), for per-group learning rates and per-task gradient clipping."""
        from .prompts import PromptModule

        out: dict[str, list[nn.Parameter]] = {}
        for module in self.prompt_modules().values():
            if isinstance(module, PromptModule):
                for g in module.groups:
                    out.setdefault(g, []).extend(p for p in module.group_parameters(g) if p.requires_grad)
            else:
                out.setdefault("other", []).extend(p for p in module.parameters() if p.requires_grad)
        return out

    def reference_norms(self) -> dict[str, float]:
        """Per prompt module, the backbone's own token norm the prompt should stay near (e.g. the
        mean row norm of the token embeddings); modules without one are left out."""
        return {}

    def chance_levels(self) -> dict[str, float]:
        """Chance level per metric key (``"<task>/accuracy"``: 100 / classes), for health checks."""
        return {}

    def diagnostics(self) -> dict[str, float]:
        """Head-specific health figures, e.g. ``"<task>/class_text_cos"`` (mean pairwise cosine of
        the class-text features)."""
        return {}

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """State of every prompt module, keyed ``<module>.<param>``."""
        out: dict[str, Tensor] = {}
        for name, module in self.prompt_modules().items():
            for k, v in module.state_dict().items():
                out[f"{name}.{k}"] = v
        return out

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Inverse of :meth:`trainable_state_dict` with shape checks."""
        from .checkpoint import load_module_state, sub_state

        for name, module in self.prompt_modules().items():
            prefix = f"{name}."
            sub = sub_state(state, prefix)
            load_module_state(module, sub, where=name)


def count_trainable(module: nn.Module) -> int:
    """Number of parameters with ``requires_grad=True``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
