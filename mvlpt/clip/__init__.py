"""The CLIP head: prompted CLIP (CoOp text prompts, VPT visual prompts, MVLPT's unified prompts)
over a frozen open_clip backbone, multitask over image classification and VQA.

Public API::

    from mvlpt.clip import BackboneConfig, create_backbone, CLIPPromptConfig, TaskInfo, CLIPTaskModel, CLIPZeroShot
    from mvlpt.clip import create_prompted_model, PromptedModel   # one call: a config or a saved run → a model

``create_prompted_model`` / ``PromptedModel`` (:mod:`mvlpt.clip.entry`) load on first use: they pull in the
pipeline (datasets, stage runners), which ``import mvlpt.clip`` does not.
"""

from .backbone import Backbone, BackboneConfig, create_backbone, tiny_clip_config
from .prompt_config import CLIPPromptConfig
from .prompts import PROMPT_METHODS, Prompts, PromptSet, register_prompt_method
from .prompts.upt import UPTMapping
from .scoring import ClassLayout
from .task_model import CLIPTaskModel
from .tasks import TaskInfo
from .zeroshot import CLIPZeroShot, zero_shot_accuracy

#: names of :mod:`mvlpt.clip.entry`, imported on first use (the entry imports the pipeline, which imports this package)
_LAZY = {"PromptedModel": "entry", "create_prompted_model": "entry"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backbone", "BackboneConfig", "CLIPPromptConfig", "CLIPTaskModel", "CLIPZeroShot", "ClassLayout", "PROMPT_METHODS",
    "PromptSet", "Prompts", "TaskInfo", "UPTMapping", "create_backbone", "register_prompt_method", "tiny_clip_config",
    "zero_shot_accuracy", "PromptedModel", "create_prompted_model",
]
