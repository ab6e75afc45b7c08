"""MPT (multitask prompt tuning, Wang et al., ICLR 2023) on a frozen T5.

Stages (``text-mpt`` commands, YAML configs under ``configs/text/``):

* ``teachers`` — a vanilla prompt per source task;
* ``source``   — decomposed prompts ``P* ⊙ U_k V_kᵀ`` on all source tasks, distilled from the teachers;
* ``adapt``    — the target stage: ``P*`` + mean source factors, low-rank factors trained on the target;
* ``eval`` / ``predict`` / ``export-peft`` / ``import-peft``.

Modules: :mod:`~text_mpt.tasks` (formats, verbalizers), :mod:`~text_mpt.data` (loading, batching),
:mod:`~text_mpt.model` (:class:`PromptedT5`), :mod:`~text_mpt.pipeline` (stages),
:mod:`~text_mpt.inference` (:class:`Predictor`), :mod:`~text_mpt.peft_io`, :mod:`~text_mpt.cli`;
:func:`~text_mpt.entry.create_prompted_model` is the one-call Python entry (a config or a saved run → a model).
Names below are imported lazily, so ``import text_mpt`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_prompted_model": "entry",
    "PromptedModel": "entry",
    "PromptedT5": "model",
    "Predictor": "inference",
    "load_trained": "inference",
    "TextRunConfig": "config",
    "load_run_config": "config",
    "train_stage": "pipeline",
    "evaluate_run": "pipeline",
    "export_peft": "peft_io",
    "import_peft": "peft_io",
    "get_task": "tasks",
    "custom_task": "tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'text_mpt' has no attribute {name!r}")
