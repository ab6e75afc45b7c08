"""Inference from a trained run: one loaded backbone answers for every task of the run,
with tasks mixed freely inside a batch ("one model, many tasks").

>>> p = Predictor.from_run("runs/text/source")
>>> p.predict([{"task": "sst2", "sentence": "a gorgeous film"},
...            {"task": "mnli", "premise": "A man sleeps.", "hypothesis": "Someone rests."}])
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from mvlpt.core.checkpoint import load_run_prompts
from mvlpt.core.config import from_dict
from mvlpt.core.errors import ConfigError, DataError
from mvlpt.core.runtime import move_to

from .backbone import load_backbone
from .config import BackboneConfig, EvalConfig, TextRunConfig
from .data import TextCollator, TextTaskDataset, task_spec
from .model import PromptedT5
from .prompt_io import check_width, prompt_from_tensors, run_meta, select_tasks, task_indices
from .run_backbone import backbone_for_run, backbone_identity, check_same_backbone, recorded_backbone
from .tasks import TaskSpec, canonical_name


def run_config_of(config: Mapping[str, Any]) -> TextRunConfig:
    """The :class:`TextRunConfig` stored in a run's ``config.json`` (``meta`` removed)."""
    return from_dict(TextRunConfig, {k: v for k, v in config.items() if k != "meta"})


def load_trained(path: str | Path, specs: Sequence[TaskSpec] | None = None, backbone_cfg: BackboneConfig | None = None,
                 eval_cfg: EvalConfig | None = None,
                 saved: tuple[Mapping[str, torch.Tensor], Mapping[str, Any]] | None = None
                 ) -> tuple[PromptedT5, Any, TextRunConfig]:
    """Backbone + trained prompts of a run (run dir, checkpoint dir or prompts file).

    The backbone is the run's (``meta.backbone``); ``backbone_cfg`` (a config's ``backbone``) may name
    it too, and is refused when it names another one (different weights or vocabulary).
    ``specs`` restricts (and orders) the tasks; default: every task of the run. ``saved``: the run's
    ``(tensors, config.json)`` already read by :func:`~mvlpt.core.checkpoint.load_run_prompts` (not read again)."""
    tensors, config = saved if saved is not None else load_run_prompts(path)
    meta = run_meta(config, path)
    run_cfg = run_config_of(config)
    run_bcfg, recorded = recorded_backbone(config)
    bcfg = backbone_for_run(backbone_cfg, run_bcfg, recorded)
    backbone, tokenizer = load_backbone(bcfg)
    check_width(tensors, backbone.config.d_model, path, "checkpoint", str(bcfg.name))
    given = "this config gives" if backbone_cfg is not None and backbone_cfg.name is not None else "loading it now gives"
    check_same_backbone(backbone_identity(bcfg, backbone, tokenizer), run_bcfg, recorded, path, "checkpoint", given)
    prompt = prompt_from_tensors(tensors)
    run_specs = [task_spec(t) for t in run_cfg.tasks]
    if specs is None:
        specs = run_specs
    else:
        prompt = select_tasks(prompt, task_indices([s.name for s in specs], meta["task_names"], path, "run"))
    ev = eval_cfg or run_cfg.eval
    model = PromptedT5(backbone, prompt, specs, tokenizer, scoring=ev.scoring, eval_mode=ev.mode,
                       max_new_tokens=ev.max_new_tokens)
    return model.eval(), tokenizer, run_cfg


class Predictor:
    """Answers rows of any task of a trained run.

    Args:
        model: a loaded :class:`PromptedT5` (see :meth:`from_run`).
        tokenizer: its tokenizer.
        max_input_length / max_target_length: truncation limits (as in training).
        device: ``auto``, ``cpu`` or ``cuda[:n]``; on CUDA inference runs under bf16 autocast.
    """

    def __init__(self, model: PromptedT5, tokenizer: Any, max_input_length: int = 256, max_target_length: int = 16,
                 device: str = "auto"):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_input_length, self.max_target_length = max_input_length, max_target_length
        self.collate = TextCollator(tokenizer.pad_token_id)

    @classmethod
    def from_run(cls, path: str | Path, device: str = "auto", mode: str | None = None) -> "Predictor":
        model, tokenizer, run_cfg = load_trained(path)
        if mode is not None:
            model.eval_mode = mode
        return cls(model, tokenizer, run_cfg.backbone.max_input_length, run_cfg.backbone.max_target_length, device)

    @property
    def tasks(self) -> list[str]:
        return list(self.model.task_names)

    def _task_id(self, name: Any) -> int:
        if not isinstance(name, str):
            raise DataError(f"every row needs a 'task' field naming one of {self.tasks}; found {name!r}")
        for cand in (name, canonical_name(name)):
            if cand in self.model.task_names:
                return self.model.task_names.index(cand)
        raise ConfigError(f"unknown task {name!r} for this run; its tasks are {self.tasks}")

    @torch.no_grad()
    def predict(self, rows: Sequence[Mapping[str, Any]], batch_size: int = 32, mode: str | None = None) -> list[dict[str, Any]]:
        """One answer per row (each row: ``"task"`` plus the task's fields; a label is optional).

        Returns dicts with ``task``, ``answer`` (the chosen verbalizer; the generated text in
        ``generate`` mode), ``pred`` (class index, -1 if a generation matches no verbalizer),
        ``label_name``, ``scores`` (per candidate) and, for regression, ``value``."""
        if mode is not None:
            if mode not in ("rank", "generate", "both"):
                raise ConfigError(f"mode must be rank, generate or both, found {mode!r}")
            self.model.eval_mode = mode
        items: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            tid = self._task_id(row.get("task"))
            spec = self.model.specs[tid]
            ex = [spec.example(flat, labelled=False) for flat in spec.rows(row)]
            if len(ex) != 1:
                raise DataError(f"row {i}: give one flat {spec.name} example per row (found {len(ex)})")
            ds = TextTaskDataset(spec.name, ex, self.tokenizer, self.max_input_length, self.max_target_length)
            items.append({**ds[0], "task_id": tid, "index": i, "example_id": i})
        order = sorted(range(len(items)), key=lambda j: len(items[j]["input_ids"]))  # length buckets
        out: list[dict[str, Any] | None] = [None] * len(items)
        amp = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else contextlib.nullcontext())
        for start in range(0, len(order), batch_size):
            batch = self.collate([items[j] for j in order[start:start + batch_size]])
            with amp:
                records = self.model.predict(move_to(batch, self.device))
            for rec in records:
                out[rec["index"]] = self._answer(rec)
        return out  # type: ignore[return-value]

    def _answer(self, rec: dict[str, Any]) -> dict[str, Any]:
        spec = self.model.specs[rec["task_id"]]
        gen = self.model.eval_mode == "generate"
        pred = rec["gen_pred"] if gen else rec["pred"]
        res: dict[str, Any] = {"task": spec.name, "answer": rec["gen_text"] if gen else rec["answer"], "pred": pred,
                               "scores": rec["scores"]}
        if spec.regression is not None:
            res["value"] = rec["gen_value"] if gen else rec["pred_value"]
        elif pred >= 0:
            res["label_name"] = spec.label_names[pred]
        if "gen_text" in rec:
            res["gen_text"] = rec["gen_text"]
        return res
