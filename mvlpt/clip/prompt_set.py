"""What a prompt method provides to the prompted CLIP, and the method registry.

A :class:`PromptSet` holds a method's trainable modules (core prompt modules, plus UPT's
mapping) and maps the ids of the tasks present in a batch to their text context and visual
prompts (:class:`Prompts`). ``CLIPPromptConfig.method`` picks the class (:func:`build_prompt_set`);
the method-specific code lives in :mod:`.text_prompt` (CoOp), :mod:`.visual_prompt` (VPT) and
:mod:`.unified_prompt` (UPT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from torch import Tensor, nn

from mvlpt.core.errors import CheckpointError, ShapeMismatchError
from mvlpt.core.prompts import PromptModule
from mvlpt.core.stages import PromptConfig, Stage, build_stage_prompt, resolve_prompt_config

from .prompt_config import CLIPPromptConfig


@dataclass
class Prompts:
    """Prompts of the tasks present (one row per task id passed to :meth:`PromptSet.forward`).

    Attributes:
        text: ``(T, l, d_text)`` context, ``(T, C_max, l, d_text)`` with class-specific context, or None.
        visual: ``(T, l, d_vis)`` shallow, ``(T, L, l, d_vis)`` deep visual prompts, or None.
    """

    text: Tensor | None = None
    visual: Tensor | None = None


@dataclass
class BackboneDims:
    """Sizes of the frozen backbone that fix the prompt shapes."""

    text_width: int
    visual_width: int
    visual_layers: int
    max_classes: int
    backbone: str = ""

    def describe(self) -> str:
        name = f"{self.backbone}: " if self.backbone else ""
        return f"{name}text width {self.text_width}, image width {self.visual_width}, {self.visual_layers} image layers"


class PromptSet(nn.Module):
    """Base class of the prompt methods."""

    def prompt_modules(self) -> dict[str, nn.Module]:
        """Trainable modules by checkpoint name (``text_prompt``, ``visual_prompt``, ``upt_mapping``)."""
        raise NotImplementedError

    def forward(self, task_ids: Tensor) -> Prompts:  # pragma: no cover - interface
        raise NotImplementedError

    def trainable_parameters_per_task(self) -> dict[str, int]:
        """``per_task`` / ``shared`` trainable counts, in total and per module (``<module>/per_task``)."""
        out = {"per_task": 0, "shared": 0}
        for name, m in self.prompt_modules().items():
            if isinstance(m, PromptModule):
                counts = m.trainable_parameters_per_task()
            else:
                counts = {"per_task": 0, "shared": sum(p.numel() for p in m.parameters() if p.requires_grad)}
            for k, v in counts.items():
                out[k] += v
                out[f"{name}/{k}"] = v
        return out


def text_prompt_shape(cfg: CLIPPromptConfig, dims: BackboneDims) -> tuple[int, ...]:
    """``(l, d_text)``, or ``(C_max, l, d_text)`` with class-specific context."""
    if cfg.class_specific_context:
        return (dims.max_classes, cfg.text.length, dims.text_width)
    return (cfg.text.length, dims.text_width)


def visual_prompt_shape(cfg: CLIPPromptConfig, dims: BackboneDims) -> tuple[int, ...]:
    """``(L, l, d_vis)`` for deep VPT, ``(l, d_vis)`` for shallow."""
    if cfg.vpt_deep:
        return (dims.visual_layers, cfg.visual.length, dims.visual_width)
    return (cfg.visual.length, dims.visual_width)


def stage_prompt(name: str, cfg: PromptConfig, stage: Stage, num_tasks: int, shape: Sequence[int],
                 dims: BackboneDims, embed_text: Callable[[str], Tensor] | None = None) -> PromptModule:
    """Resolve ``cfg`` for ``stage`` and build the prompt module ``name`` (source tensors under ``"<name>."``).
    Source checkpoints of another shape raise errors naming the expected shape and backbone."""
    resolved = resolve_prompt_config(cfg, stage)
    try:
        return build_stage_prompt(resolved, num_tasks, shape, embed_text=embed_text, source_key=f"{name}.")
    except (ShapeMismatchError, CheckpointError) as e:
        raise type(e)(f"{name}: {e}. This model expects {name} of shape {tuple(shape)} "
                      f"({dims.describe()}, prompt length {resolved.length}, rank {resolved.rank}); "
                      f"source: {resolved.source_path}") from None


def build_prompt_set(cfg: CLIPPromptConfig, stage: Stage, num_tasks: int, dims: BackboneDims,
                     embed_text: Callable[[str], Tensor] | None) -> PromptSet:
    """The :class:`PromptSet` of ``cfg.method``."""
    from .text_prompt import CoOpPrompts
    from .unified_prompt import UnifiedPrompts
    from .visual_prompt import VPTPrompts

    registry: dict[str, type] = {"coop": CoOpPrompts, "vpt": VPTPrompts, "upt": UnifiedPrompts}
    return registry[cfg.method](cfg, stage, num_tasks, dims, embed_text)
