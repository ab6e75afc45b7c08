"""The shared core: prompt decomposition, distillation, the one training loop, checkpoints, configs.

Imports torch, safetensors and yaml only — never a head (T5, CLIP).
"""

from .checkpoint import load_run_prompts, load_tensors, save_tensors
from .config import ConfigError, apply_overrides, deep_merge, from_dict, load_config, to_dict
from .distill import DistillConfig, kl_distillation, mse_distillation
from .errors import CheckpointError, DataError, MVLPTError, NonFiniteLossError, ShapeMismatchError, TaskIdError
from .evaluation import evaluate
from .optim import OptimConfig, ScheduleConfig
from .prompts import DecomposedPrompt, PromptModule, VanillaPrompt, build_prompt
from .results import markdown_table, mean_std, per_task_rows, write_run_results, write_table
from .runtime import freeze, move_to, resolve_device, seed_everything
from .sampling import MultiTaskBatchSampler, MultiTaskDataset, SamplingConfig
from .stages import MPT_STAGES, TRAINED_STAGES, PromptConfig, Stage, build_stage_prompt, resolve_prompt_config
from .task_model import StepOutput, TaskModel, count_trainable
from .train_config import TrainConfig
from .trainer import Trainer
from .transfer import from_peft_tensors, init_from_source, to_peft_tensors

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "DecomposedPrompt", "DistillConfig", "MPT_STAGES", "MVLPTError",
    "MultiTaskBatchSampler", "MultiTaskDataset", "NonFiniteLossError", "OptimConfig", "PromptConfig",
    "PromptModule", "SamplingConfig", "ScheduleConfig", "ShapeMismatchError", "Stage", "StepOutput", "TRAINED_STAGES",
    "TaskIdError", "TaskModel", "TrainConfig", "Trainer", "VanillaPrompt", "apply_overrides", "build_prompt",
    "build_stage_prompt", "count_trainable", "deep_merge", "evaluate", "freeze", "from_dict", "from_peft_tensors",
    "init_from_source", "kl_distillation", "load_config", "load_run_prompts", "load_tensors", "markdown_table",
    "mean_std", "move_to", "mse_distillation", "per_task_rows", "resolve_device", "resolve_prompt_config",
    "save_tensors", "seed_everything", "to_dict", "to_peft_tensors", "write_run_results", "write_table",
]
