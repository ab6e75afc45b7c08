"""UPT (MVLPT's unified prompts): text and visual prompts produced from one prompt set.

The prompt set of a task is its text context ``(l_t, d_text)`` (or ``(C, l_t, d_text)``) and
its visual tokens ``(l_v, d_vis)`` / ``(L, l_v, d_vis)``, each a core prompt module (so each is
decomposed as ``P* ⊙ U Vᵀ`` in the multitask stages). :class:`UPTMapping` turns the set into
the prompts the towers read: every token is mapped linearly to a common width (128 in MVLPT),
all tokens of the set attend to each other in a one-layer transformer (1 head), and linear
maps take them back to the text and visual widths (a map is the identity when the widths
already agree). The mapping is shared by all tasks; it trains whenever the shared prompt
does (teachers, source, single) and is loaded from the source run in the target stage (from the
tensors the prompts were initialised from: the run is not read again).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mvlpt.core.checkpoint import load_module_state, sub_state
from mvlpt.core.errors import CheckpointError, ConfigError
from mvlpt.core.stages import SourceRuns, Stage, resolve_prompt_config

from .registry import register_prompt_method
from .base import (BackboneDims, Prompts, PromptSet, TextEmbedder, stage_prompt, text_prompt_shape,
                   visual_prompt_shape)


def _linear(d_in: int, d_out: int) -> nn.Module:
    return nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out)


class UPTMapping(nn.Module):
    """Linear in → one transformer layer over all prompt tokens → linear out, per modality."""

    def __init__(self, text_width: int, visual_width: int, width: int = 128, heads: int = 1):
        super().__init__()
        from open_clip.transformer import QuickGELU, Transformer  # the backbone library, once a model is built

        self.text_in, self.text_out = _linear(text_width, width), _linear(width, text_width)
        self.visual_in, self.visual_out = _linear(visual_width, width), _linear(width, visual_width)
        self.mixer = Transformer(width=width, layers=1, heads=heads, act_layer=QuickGELU)  # CLIP's block, as MVLPT

    def forward(self, text: Tensor, visual: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``text`` ``(T, ..., d_text)`` and ``visual`` ``(T, ..., d_vis)`` to the same shapes."""
        t_shape, v_shape = text.shape, visual.shape
        t = self.text_in(text.reshape(t_shape[0], -1, t_shape[-1]))
        v = self.visual_in(visual.reshape(v_shape[0], -1, v_shape[-1]))
        z = self.mixer(torch.cat([t, v], dim=1))
        n_t = t.shape[1]
        return self.text_out(z[:, :n_t]).reshape(t_shape), self.visual_out(z[:, n_t:]).reshape(v_shape)


@register_prompt_method
class UnifiedPrompts(PromptSet):
    """UPT: text context + visual prompts per task, mixed by a shared learned mapping."""

    name = "upt"
    uses_text = True
    uses_visual = True
    shape_keys = ("text.length", "text.rank", "visual.length", "visual.rank", "vpt_deep", "upt_width",
                  "class_specific_context")

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.text.length == 0 or cfg.visual.length == 0:
            raise ConfigError("prompt.method=upt maps one prompt set to text and visual prompts: "
                              f"prompt.text.length and prompt.visual.length must be > 0, found "
                              f"{cfg.text.length} and {cfg.visual.length}")

    def __init__(self, cfg, stage: Stage, num_tasks: int, dims: BackboneDims, embed_text: TextEmbedder | None,
                 sources: SourceRuns):
        super().__init__(cfg, stage, num_tasks, dims, embed_text, sources)
        self.text_prompt = stage_prompt("text_prompt", cfg.text, stage, num_tasks, text_prompt_shape(cfg, dims),
                                        dims, sources, embed_text)
        self.visual_prompt = stage_prompt("visual_prompt", cfg.visual, stage, num_tasks,
                                          visual_prompt_shape(cfg, dims), dims, sources)
        self.upt_mapping = UPTMapping(dims.text_width, dims.visual_width, cfg.upt_width, cfg.upt_heads)
        resolved = resolve_prompt_config(cfg.text, stage)
        tensors = sources.for_config(resolved)
        if tensors is not None:
            sub = sub_state(tensors, "upt_mapping.")
            if not sub:
                raise CheckpointError(f"source {resolved.source_path} has no 'upt_mapping.' tensors: it was not "
                                      f"trained with prompt.method=upt (found {sorted(tensors)[:6]})")
            load_module_state(self.upt_mapping, sub, where=f"upt_mapping (upt_width={cfg.upt_width}, {dims.describe()})")
        trains = resolved.kind == "vanilla" or "shared" in resolved.train
        self.upt_mapping.requires_grad_(trains)

    def prompt_modules(self) -> dict[str, nn.Module]:
        return {"text_prompt": self.text_prompt, "visual_prompt": self.visual_prompt, "upt_mapping": self.upt_mapping}

    def forward(self, task_ids: Tensor) -> Prompts:
        text, visual = self.upt_mapping(self.text_prompt(task_ids), self.visual_prompt(task_ids))
        return Prompts(text=text, visual=visual)
