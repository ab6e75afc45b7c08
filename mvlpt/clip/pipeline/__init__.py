"""The CLIP pipeline: run configs, stage runners (teachers → source → target, single-task and
zero-shot baselines), the few-shot sweep, whole experiments and inference with trained runs."""

from .backbones import Backbone, BackbonePool, load_backbone
from .experiment import ensure_backbone, run_experiment, run_sources
from .predict import Predictor
from .report import plot_results, summarize, write_results
from .run_config import (CLIPRunConfig, DataConfig, MethodSpec, SweepConfig, TaskEntry, config_for_stage,
                         config_from_run, load_run_config)
from .stages import (StageResult, evaluate_trained, load_trained, run_single, run_source, run_stage, run_target,
                     run_teachers, run_training, run_zeroshot)
from .sweep import run_fewshot

__all__ = [
    "Backbone", "BackbonePool", "CLIPRunConfig", "DataConfig", "MethodSpec", "Predictor", "StageResult",
    "SweepConfig", "TaskEntry", "config_for_stage", "config_from_run", "ensure_backbone", "evaluate_trained",
    "load_backbone", "load_run_config", "load_trained", "plot_results", "run_experiment", "run_fewshot",
    "run_single", "run_source", "run_sources", "run_stage", "run_target", "run_teachers", "run_training",
    "run_zeroshot", "summarize", "write_results",
]
