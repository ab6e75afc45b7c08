"""The CLIP head: prompted CLIP (CoOp text prompts, VPT visual prompts, MVLPT's unified prompts)
over a frozen open_clip backbone, multitask over image classification and VQA.

Public API::

    from mvlpt.clip import BackboneConfig, create_backbone, CLIPPromptConfig, TaskInfo, CLIPTaskModel, CLIPZeroShot
"""

from .backbone import BackboneConfig, create_backbone, create_backbone_from_dict, freeze, model_from_config, tiny_clip_config
from .prompt_config import CLIPPromptConfig
from .prompt_set import Prompts, PromptSet
from .scoring import ClassLayout
from .task_model import CLIPTaskModel
from .tasks import TaskInfo
from .unified_prompt import UPTMapping
from .zeroshot import CLIPZeroShot

__all__ = [
    "BackboneConfig", "CLIPPromptConfig", "CLIPTaskModel", "CLIPZeroShot", "ClassLayout", "PromptSet", "Prompts",
    "TaskInfo", "UPTMapping", "create_backbone", "create_backbone_from_dict", "freeze", "model_from_config",
    "tiny_clip_config",
]
