"""What a prompt method provides to the prompted CLIP: the abstractions every method file builds on.

A :class:`PromptSet` holds a method's trainable modules (core prompt modules, plus e.g. UPT's
mapping) and maps the ids of the tasks present in a batch to their text context and visual
prompts (:class:`Prompts`). A method class declares what it is to the rest of the head:

* ``name`` — the value of ``prompt.method`` that selects it (:data:`~mvlpt.clip.prompts.PROMPT_METHODS`);
* ``uses_text`` / ``uses_visual`` — whether it learns a text context / visual prompts (the towers
  are asked for prompt support, the distillation slots are masked accordingly);
* ``shape_keys`` — the ``prompt.*`` config keys that fix the shapes of its saved tensors (a teacher /
  source run is refused when one differs);
* :meth:`PromptSet.check_config` — method-specific config checks.

Its ``__init__(cfg, stage, num_tasks, dims, embed_text, sources)`` builds the modules for the stage,
each through :func:`stage_prompt`; a module that starts from a source run gets the run's tensors
from ``sources`` (:class:`~mvlpt.core.stages.SourceRuns`: each run read once), never a path to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence

from torch import Tensor, nn

from mvlpt.core.errors import CheckpointError, ShapeMismatchError
from mvlpt.core.prompts import PromptModule
from mvlpt.core.stages import PromptConfig, SourceRuns, Stage, build_stage_prompt, resolve_prompt_config

if TYPE_CHECKING:  # the config reads the registry; the methods only read the config
    from ..prompt_config import CLIPPromptConfig

TextEmbedder = Callable[[str], Tensor]


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
    """Base class of the prompt methods (see the module docstring for what a method declares)."""

    #: ``prompt.method`` value of the method
    name: ClassVar[str] = ""
    #: whether the method learns a text context (when ``prompt.text.length > 0``)
    uses_text: ClassVar[bool] = False
    #: whether the method learns visual prompts (when ``prompt.visual.length > 0``)
    uses_visual: ClassVar[bool] = False
    #: ``prompt.*`` keys (dotted) that fix the shapes of the method's saved tensors
    shape_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: "CLIPPromptConfig", stage: Stage, num_tasks: int, dims: BackboneDims,
                 embed_text: TextEmbedder | None, sources: SourceRuns):
        super().__init__()

    @classmethod
    def check_config(cls, cfg: "CLIPPromptConfig") -> None:
        """Raise :class:`~mvlpt.core.errors.ConfigError` for settings the method cannot use (default: none)."""

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


def text_prompt_shape(cfg: "CLIPPromptConfig", dims: BackboneDims) -> tuple[int, ...]:
    """``(l, d_text)``, or ``(C_max, l, d_text)`` with class-specific context."""
    if cfg.class_specific_context:
        return (dims.max_classes, cfg.text.length, dims.text_width)
    return (cfg.text.length, dims.text_width)


def visual_prompt_shape(cfg: "CLIPPromptConfig", dims: BackboneDims) -> tuple[int, ...]:
    """``(L, l, d_vis)`` for deep VPT, ``(l, d_vis)`` for shallow."""
    if cfg.vpt_deep:
        return (dims.visual_layers, cfg.visual.length, dims.visual_width)
    return (cfg.visual.length, dims.visual_width)


def stage_prompt(name: str, cfg: PromptConfig, stage: Stage, num_tasks: int, shape: Sequence[int],
                 dims: BackboneDims, sources: SourceRuns, embed_text: TextEmbedder | None = None) -> PromptModule:
    """Resolve ``cfg`` for ``stage`` and build the prompt module ``name`` (source tensors under ``"<name>."``,
    taken from ``sources``). Source checkpoints of another shape raise errors naming the expected shape and
    backbone."""
    resolved = resolve_prompt_config(cfg, stage)
    try:
        return build_stage_prompt(resolved, num_tasks, shape, embed_text=embed_text, source_key=f"{name}.",
                                  source_tensors=sources.for_config(resolved))
    except (ShapeMismatchError, CheckpointError) as e:
        raise type(e)(f"{name}: {e}. This model expects {name} of shape {tuple(shape)} "
                      f"({dims.describe()}, prompt length {resolved.length}, rank {resolved.rank}); "
                      f"source: {resolved.source_path}") from None
