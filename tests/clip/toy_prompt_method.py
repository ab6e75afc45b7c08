"""A toy prompt method, whole in this one file: importing it registers ``toy_shift`` (nothing else in the
library is touched). A CoOp-like text context passed through a shared linear map."""

from __future__ import annotations

from torch import Tensor, nn

from mvlpt.clip.prompts import Prompts, PromptSet, register_prompt_method, stage_prompt, text_prompt_shape
from mvlpt.core.errors import ConfigError


@register_prompt_method
class ToyShiftPrompts(PromptSet):
    """A text context per task, mapped by one shared linear layer (trains with the shared prompt)."""

    name = "toy_shift"
    uses_text = True
    shape_keys = ("text.length", "text.rank", "text.init_std")  # init_std: a key only this method declares

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.text.length == 0:
            raise ConfigError("prompt.method=toy_shift needs prompt.text.length > 0")

    def __init__(self, cfg, stage, num_tasks, dims, embed_text, sources):
        super().__init__(cfg, stage, num_tasks, dims, embed_text, sources)
        self.text_prompt = stage_prompt("text_prompt", cfg.text, stage, num_tasks, text_prompt_shape(cfg, dims),
                                        dims, sources, embed_text)
        self.toy_map = nn.Linear(dims.text_width, dims.text_width)

    def prompt_modules(self) -> dict[str, nn.Module]:
        return {"text_prompt": self.text_prompt, "toy_map": self.toy_map}

    def forward(self, task_ids: Tensor) -> Prompts:
        return Prompts(text=self.toy_map(self.text_prompt(task_ids)))
