"""The CLIP head: prompted CLIP (CoOp text prompts, VPT visual prompts, MVLPT's unified prompts)
over a frozen open_clip backbone, multitask over image classification and VQA.

Public API::

    from mvlpt.clip import BackboneConfig, create_backbone, CLIPPromptConfig, TaskInfo, CLIPTaskModel, CLIPZeroShot
"""

from .backbone import Backbone, BackboneConfig, create_backbone, tiny_clip_config
from .prompt_config import CLIPPromptConfig
from .prompts import PROMPT_METHODS, Prompts, PromptSet, register_prompt_method
from .prompts.upt import UPTMapping
from .scoring import ClassLayout
from .task_model import CLIPTaskModel
from .tasks import TaskInfo
from .zeroshot import CLIPZeroShot, zero_shot_accuracy

__all__ = [
    "Backbone", "BackboneConfig", "CLIPPromptConfig", "CLIPTaskModel", "CLIPZeroShot", "ClassLayout", "PROMPT_METHODS",
    "PromptSet", "Prompts", "TaskInfo", "UPTMapping", "create_backbone", "register_prompt_method", "tiny_clip_config",
    "zero_shot_accuracy",
]
