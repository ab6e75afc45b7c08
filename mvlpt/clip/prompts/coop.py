"""CoOp: a learned text context per task, spliced between the start token and the class name.

The context is one core prompt module of shape ``(l, d_text)`` (``(C_max, l, d_text)`` with
class-specific context, CoOp's CSC); how it is spliced into the class texts and encoded is
:mod:`mvlpt.clip.class_texts`. Images are encoded by the frozen image tower as is.
"""

from __future__ import annotations

from torch import Tensor, nn

from mvlpt.core.stages import SourceRuns, Stage

from .registry import register_prompt_method
from .base import BackboneDims, Prompts, PromptSet, TextEmbedder, stage_prompt, text_prompt_shape


@register_prompt_method
class CoOpPrompts(PromptSet):
    """CoOp: a learned text context per task (decomposed through the core); no visual prompts."""

    name = "coop"
    uses_text = True
    shape_keys = ("text.length", "text.rank", "class_specific_context")

    def __init__(self, cfg, stage: Stage, num_tasks: int, dims: BackboneDims, embed_text: TextEmbedder | None,
                 sources: SourceRuns):
        super().__init__(cfg, stage, num_tasks, dims, embed_text, sources)
        self.text_prompt = None
        if cfg.text.length > 0:
            self.text_prompt = stage_prompt("text_prompt", cfg.text, stage, num_tasks, text_prompt_shape(cfg, dims),
                                            dims, sources, embed_text)

    def prompt_modules(self) -> dict[str, nn.Module]:
        return {"text_prompt": self.text_prompt} if self.text_prompt is not None else {}

    def forward(self, task_ids: Tensor) -> Prompts:
        return Prompts(text=self.text_prompt(task_ids) if self.text_prompt is not None else None)
