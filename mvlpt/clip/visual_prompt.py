"""VPT visual prompts: learned tokens in the frozen ViT image tower (shallow or deep).

The prompt is one core prompt module of shape ``(l, d_vis)`` (shallow: inserted once after the
class token) or ``(L, l, d_vis)`` (deep: a fresh set replacing the previous layer's prompt
tokens before each of the ``L`` blocks); see :mod:`.vision_tower` for the token path. Class
texts stay the tasks' hand-written templates (nothing trainable on the text side).
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from mvlpt.core.stages import Stage

from .prompt_config import CLIPPromptConfig
from .prompt_set import BackboneDims, Prompts, PromptSet, stage_prompt, visual_prompt_shape


class VPTPrompts(PromptSet):
    """VPT: a visual prompt per task (decomposed through the core); no text context."""

    def __init__(self, cfg: CLIPPromptConfig, stage: Stage, num_tasks: int, dims: BackboneDims,
                 embed_text: Callable[[str], Tensor] | None):
        super().__init__()
        self.visual_prompt = None
        if cfg.visual.length > 0:
            self.visual_prompt = stage_prompt("visual_prompt", cfg.visual, stage, num_tasks,
                                              visual_prompt_shape(cfg, dims), dims)

    def prompt_modules(self) -> dict[str, nn.Module]:
        return {"visual_prompt": self.visual_prompt} if self.visual_prompt is not None else {}

    def forward(self, task_ids: Tensor) -> Prompts:
        return Prompts(visual=self.visual_prompt(task_ids) if self.visual_prompt is not None else None)
