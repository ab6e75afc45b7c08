"""VPT: learned visual tokens in the frozen ViT image tower (shallow or deep).

The prompt is one core prompt module of shape ``(l, d_vis)`` (shallow: inserted once after the
class token) or ``(L, l, d_vis)`` (deep: a fresh set replacing the previous layer's prompt
tokens before each of the ``L`` blocks); see :mod:`mvlpt.clip.vision_tower` for the token path.
Class texts stay the tasks' hand-written templates (nothing trainable on the text side).
"""

from __future__ import annotations

from torch import Tensor, nn

from mvlpt.core.stages import SourceRuns, Stage

from .registry import register_prompt_method
from .base import BackboneDims, Prompts, PromptSet, TextEmbedder, stage_prompt, visual_prompt_shape


@register_prompt_method
class VPTPrompts(PromptSet):
    """VPT: a visual prompt per task (decomposed through the core); no text context."""

    name = "vpt"
    uses_visual = True
    shape_keys = ("visual.length", "visual.rank", "vpt_deep")

    def __init__(self, cfg, stage: Stage, num_tasks: int, dims: BackboneDims, embed_text: TextEmbedder | None,
                 sources: SourceRuns):
        super().__init__(cfg, stage, num_tasks, dims, embed_text, sources)
        self.visual_prompt = None
        if cfg.visual.length > 0:
            self.visual_prompt = stage_prompt("visual_prompt", cfg.visual, stage, num_tasks,
                                              visual_prompt_shape(cfg, dims), dims, sources)

    def prompt_modules(self) -> dict[str, nn.Module]:
        return {"visual_prompt": self.visual_prompt} if self.visual_prompt is not None else {}

    def forward(self, task_ids: Tensor) -> Prompts:
        return Prompts(visual=self.visual_prompt(task_ids) if self.visual_prompt is not None else None)
