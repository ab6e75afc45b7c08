"""The prompt methods of the CLIP head, as a registry.

:data:`PROMPT_METHODS` maps ``prompt.method`` to its :class:`~.base.PromptSet` class; the config
validates ``method`` against it (:func:`prompt_method`: an unknown name is an error naming the
registered methods and the nearest one), the task model builds from it (:func:`build_prompt_set`),
and a saved run is checked for the keys the methods declare (:func:`prompt_shape_keys`).

Adding a method = one file defining a :class:`~.base.PromptSet` subclass decorated with
:func:`register_prompt_method` (its ``name``, ``uses_text`` / ``uses_visual``, ``shape_keys``) + one
import line at the end of this file. A method registered from anywhere else (a plug-in, a test) is
usable the same way once its module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mvlpt.core.stages import SourceRuns, Stage

from .registry import PROMPT_METHODS, prompt_method, prompt_shape_keys, register_prompt_method
from .base import BackboneDims, Prompts, PromptSet, TextEmbedder, stage_prompt, text_prompt_shape, visual_prompt_shape

if TYPE_CHECKING:
    from ..prompt_config import CLIPPromptConfig

def build_prompt_set(cfg: "CLIPPromptConfig", stage: Stage, num_tasks: int, dims: BackboneDims,
                     embed_text: TextEmbedder | None, sources: SourceRuns | None = None) -> PromptSet:
    """The :class:`PromptSet` of ``cfg.method``. ``sources`` holds the source runs already read (one per
    command); without it, each source run the prompts start from is read once for this set."""
    sources = sources if sources is not None else SourceRuns()
    return prompt_method(cfg.method)(cfg, stage, num_tasks, dims, embed_text, sources)


# -- the methods: importing a method's file registers it (one line per method) ----------------------------------
from . import coop  # noqa: E402,F401
from . import vpt  # noqa: E402,F401
from . import upt  # noqa: E402,F401

__all__ = [
    "PROMPT_METHODS", "BackboneDims", "PromptSet", "Prompts", "build_prompt_set", "prompt_method",
    "prompt_shape_keys", "register_prompt_method", "stage_prompt", "text_prompt_shape", "visual_prompt_shape",
]
