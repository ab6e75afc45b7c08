"""The CLIP pipeline: run configs, stage runners (teachers → source → target, single-task and
zero-shot baselines), the few-shot sweep, whole experiments and inference with trained runs."""

from __future__ import annotations

import importlib
from typing import Any

# names → their module, imported on first use: ``mvlpt.clip.pipeline.run_config`` (what the CLI's config
# checks need) then loads without open_clip, datasets_vl and the stage runners
_EXPORTS = {
    "Backbone": "backbones", "BackbonePool": "backbones",
    "ensure_backbone": "experiment", "run_experiment": "experiment", "run_sources": "experiment",
    "Predictor": "predict",
    "plot_results": "report", "summarize": "report", "write_sweep_results": "report",
    "CLIPRunConfig": "run_config", "DataConfig": "run_config", "MethodSpec": "run_config", "SweepConfig": "run_config",
    "TaskEntry": "run_config", "config_for_stage": "run_config", "config_from_run": "run_config",
    "load_run_config": "run_config",
    "StageResult": "stages", "evaluate_trained": "stages", "load_trained": "stages", "run_single": "stages",
    "run_source": "stages", "run_stage": "stages", "run_target": "stages", "run_teachers": "stages",
    "run_training": "stages", "run_zeroshot": "stages",
    "run_fewshot": "sweep",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backbone", "BackbonePool", "CLIPRunConfig", "DataConfig", "MethodSpec", "Predictor", "StageResult",
    "SweepConfig", "TaskEntry", "config_for_stage", "config_from_run", "ensure_backbone", "evaluate_trained",
    "load_run_config", "load_trained", "plot_results", "run_experiment", "run_fewshot",
    "run_single", "run_source", "run_sources", "run_stage", "run_target", "run_teachers", "run_training",
    "run_zeroshot", "summarize", "write_sweep_results",
]
