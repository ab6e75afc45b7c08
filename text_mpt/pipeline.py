"""The three MPT stages on a frozen T5, driven by a :class:`~text_mpt.config.TextRunConfig`.

* ``teachers`` — one run trains an independent vanilla prompt per source task
  (``VanillaPrompt`` with ``num_tasks=T``; batches mix tasks). AdamW updates are per element,
  so the prompts are independent except for gradient clipping, which is global: the
  teachers config sets ``train.clip_grad_norm: 0`` for fully independent teachers.
* ``source`` — decomposed prompts on all source tasks jointly: task loss + KL(teacher ‖ student)
  on the candidate scores + MSE on the encoder hidden states. The teacher is a second
  :class:`PromptedT5` that shares the student's backbone module (one T5 in memory).
* ``target`` (command ``adapt``) — decomposed prompt initialised from the source
  (``P*`` + mean of the factors); trains the factors (``prompt.train: [task_factors, shared]``
  also trains ``P*``); ``few_shot_k`` keeps k examples per class.

Every run writes ``checkpoints/``, ``config.json`` (resolved config), ``metrics.jsonl`` and
``results.md`` / ``results.csv`` (per-task metrics of the best checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from mvlpt.core.checkpoint import load_run_prompts
from mvlpt.core.config import to_dict
from mvlpt.core.errors import ConfigError
from mvlpt.core.results import write_table
from mvlpt.core.stages import build_stage_prompt, resolve_prompt_config
from mvlpt.core.trainer import Trainer, seed_everything

from .backbone import load_backbone
from .config import TextRunConfig
from .data import TextCollator, TextTaskDataset, few_shot, load_examples, task_spec
from .model import PromptedT5
from .prompt_io import PROMPT_KEY, check_width, load_teacher_prompt, prompt_tensors
from .tasks import TaskSpec

#: config stage → core stage preset
CORE_STAGE = {"teachers": "teachers", "source": "source", "target": "target"}


def embed_text_fn(backbone, tokenizer) -> Callable[[str], torch.Tensor]:
    """Text → token embeddings ``(n, d)`` of the backbone (for ``prompt.init: text``)."""
    def embed(text: str) -> torch.Tensor:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return backbone.get_input_embeddings().weight[torch.tensor(ids)].detach()
    return embed


def build_datasets(cfg: TextRunConfig, tokenizer, which: str) -> list[TextTaskDataset]:
    """One tokenised dataset per task (``which``: ``train`` or ``eval``; eval sets are length-sorted)."""
    out = []
    for tc in cfg.tasks:
        ex = load_examples(tc, which, cfg.data_root, seed=cfg.train.seed)
        if which == "train" and cfg.few_shot_k > 0:
            ex = few_shot(ex, cfg.few_shot_k, cfg.few_shot_seed)
        out.append(TextTaskDataset(task_spec(tc).name, ex, tokenizer, cfg.backbone.max_input_length,
                                   cfg.backbone.max_target_length, sort_by_length=which == "eval"))
    return out


def build_prompt(cfg: TextRunConfig, backbone, tokenizer):
    """The stage's prompt module (source-initialised for the target stage, with a width check)."""
    pcfg = resolve_prompt_config(cfg.prompt, CORE_STAGE[cfg.stage])  # type: ignore[arg-type]
    d_model = backbone.config.d_model
    if pcfg.init == "source":
        tensors, _ = load_run_prompts(pcfg.source_path)  # type: ignore[arg-type]
        check_width(tensors, d_model, pcfg.source_path, "prompt.source_path", cfg.backbone.name)
        if "shared" not in prompt_tensors(tensors):
            raise ConfigError(f"prompt.source_path {pcfg.source_path} holds vanilla prompts (a teachers run?); "
                              "the target stage starts from a source run (decomposed prompts)")
    prompt = build_stage_prompt(pcfg, len(cfg.tasks), (pcfg.length, d_model), embed_text=embed_text_fn(backbone, tokenizer),
                                source_key=PROMPT_KEY + ".")
    return prompt, pcfg


def make_model(cfg: TextRunConfig, backbone, tokenizer, specs: list[TaskSpec], prompt, score_all: bool) -> PromptedT5:
    return PromptedT5(backbone, prompt, specs, tokenizer, scoring=cfg.eval.scoring, eval_mode=cfg.eval.mode,
                      max_new_tokens=cfg.eval.max_new_tokens, score_all=score_all, backbone_dropout=cfg.backbone.dropout)


def run_config_dict(cfg: TextRunConfig, d_model: int, resolved_prompt=None, backbone_config=None) -> dict[str, Any]:
    """The config saved with every checkpoint: the run config plus ``meta`` (task names, backbone sizes)."""
    meta: dict[str, Any] = {"task_names": [task_spec(t).name for t in cfg.tasks], "d_model": d_model, "stage": cfg.stage}
    if backbone_config is not None:
        meta.update(num_heads=backbone_config.num_heads, num_layers=backbone_config.num_layers)
    if resolved_prompt is not None:
        meta["resolved_prompt"] = to_dict(resolved_prompt)
    return {**to_dict(cfg), "meta": meta}


def results_rows(specs: list[TaskSpec], metrics: dict[str, float]) -> list[dict[str, Any]]:
    """One row per task (its metrics, score, n) and a final ``mean`` row."""
    rows = []
    for s in specs:
        row: dict[str, Any] = {"task": s.name}
        for k, v in metrics.items():
            if k.startswith(s.name + "/"):
                key = k[len(s.name) + 1:]
                row[key] = int(v) if key == "n" else v
        rows.append(row)
    if "score" in metrics:
        rows.append({"task": "mean", "score": metrics["score"]})
    return rows


def write_results(run_dir: str | Path, specs: list[TaskSpec], metrics: dict[str, float], title: str) -> tuple[Path, Path]:
    rows = results_rows(specs, metrics)
    cols = ["task", "score"] + sorted({k for r in rows for k in r} - {"task", "score", "n"}) + ["n"]
    return write_table(rows, Path(run_dir) / "results", columns=cols, title=title)


def train_stage(cfg: TextRunConfig, expected_stage: str | None = None) -> dict[str, Any]:
    """Train one stage end to end; returns ``{"run_dir", "metrics", "step", "results"}``."""
    if expected_stage is not None and cfg.stage != expected_stage:
        cmd = "adapt" if cfg.stage == "target" else cfg.stage
        raise ConfigError(f"this is a {cfg.stage!r} config; run it with `text-mpt {cmd}`")
    seed_everything(cfg.train.seed)
    backbone, tokenizer = load_backbone(cfg.backbone)
    specs = [task_spec(t) for t in cfg.tasks]
    train_ds = build_datasets(cfg, tokenizer, "train")
    eval_ds = build_datasets(cfg, tokenizer, "eval")
    torch.manual_seed(cfg.train.seed)
    prompt, pcfg = build_prompt(cfg, backbone, tokenizer)
    d = cfg.train.distill
    teacher = None
    if cfg.stage == "source" and cfg.teacher_path and (d.kl_weight > 0 or d.mse_weight > 0):
        t_prompt = load_teacher_prompt(cfg.teacher_path, [s.name for s in specs], backbone.config.d_model,
                                       cfg.backbone.name, pcfg.length, need_same_length=d.mse_weight > 0)
        teacher = make_model(cfg, backbone, tokenizer, specs, t_prompt, score_all=True)  # shares `backbone`
    model = make_model(cfg, backbone, tokenizer, specs, prompt, score_all=teacher is not None and d.kl_weight > 0)
    run_cfg = run_config_dict(cfg, backbone.config.d_model, pcfg, backbone.config)
    trainer = Trainer(model, train_ds, TextCollator(tokenizer.pad_token_id), cfg.train, cfg.output_dir,
                      eval_datasets=eval_ds, teacher=teacher, run_config=run_cfg)
    result = trainer.fit()
    best = result["best"]
    metrics = best["metrics"] if best.get("step") is not None else result["final"]
    which = f"best checkpoint, step {best['step']}" if best.get("step") is not None else f"step {result['step']}"
    paths = write_results(cfg.output_dir, specs, metrics, f"text-mpt {cfg.stage}: {cfg.output_dir} ({which})")
    return {"run_dir": cfg.output_dir, "metrics": metrics, "step": result["step"], "results": paths}


def evaluate_run(cfg: TextRunConfig) -> dict[str, Any]:
    """Evaluate a trained run (``cfg.checkpoint``, default ``cfg.output_dir``) on the eval splits of ``cfg.tasks``.

    Writes ``<output_dir>/eval/results.md|csv`` and ``metrics.jsonl``."""
    from .inference import load_trained

    path = cfg.checkpoint or cfg.output_dir
    model, tokenizer, _ = load_trained(path, [task_spec(t) for t in cfg.tasks], backbone_cfg=cfg.backbone,
                                       eval_cfg=cfg.eval)
    eval_ds = build_datasets(cfg, tokenizer, "eval")
    out_dir = Path(cfg.output_dir) / "eval"
    trainer = Trainer(model, eval_ds, TextCollator(tokenizer.pad_token_id), cfg.train, out_dir, eval_datasets=eval_ds)
    metrics = trainer.evaluate()
    trainer.logger.log(0, "eval", metrics)
    trainer.logger.close()
    paths = write_results(out_dir, model.specs, metrics, f"text-mpt eval: {path}")
    return {"run_dir": str(out_dir), "metrics": metrics, "results": paths}
