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

Model selection never happens on the reported data (``selection``, see
:class:`~text_mpt.config.SelectionConfig`; default ``mode: auto``, the Compacter → ATTEMPT → DePT
convention): each task is split into ``train`` / ``val`` / ``test`` (:func:`~text_mpt.data.task_parts`;
small tasks halve the eval split into val and test, large tasks hold 1,000 train rows out as val and
report on the full eval split). The trainer evaluates periodically on ``val`` and keeps the best
checkpoint; after training the best checkpoint's prompts (``checkpoints/best``) are loaded and
evaluated once on ``test`` (the last step when no evaluation on val happened). ``selection.mode: dev``
reproduces the old behaviour (select and report on the eval split), labelled as such.

Every run writes ``checkpoints/``, ``config.json`` (resolved config; ``meta.selection`` records how
each task was split: rule, seed, sizes), ``splits.json`` (the val and test example ids per task),
``metrics.jsonl`` (``eval`` rows on val, one ``test`` row) and ``results.md`` / ``results.csv``: one
row per task and part, column ``split`` = ``test`` (reported) or ``val`` (selection, best step).
:func:`evaluate_run` (``text-mpt eval``) scores the same seeded ``test`` part by default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from mvlpt.core.checkpoint import load_run_prompts, write_json
from mvlpt.core.config import to_dict
from mvlpt.core.data_root import env_data_root, shared_data_root
from mvlpt.core.errors import ConfigError
from mvlpt.core.evaluation import eval_context, evaluate
from mvlpt.core.health import check_consumed_run
from mvlpt.core.logging_utils import MetricsLogger
from mvlpt.core.provenance import provenance_line
from mvlpt.core.results import append_run_health, per_task_rows, write_run_results
from mvlpt.core.run_dir import fingerprint
from mvlpt.core.runtime import seed_everything
from mvlpt.core.stages import build_stage_prompt, resolve_prompt_config
from mvlpt.core.trainer import Trainer

from .backbone import DEFAULT_NAME, load_backbone
from .config import BackboneConfig, TextRunConfig
from .data import TaskParts, TextCollator, TextTaskDataset, task_parts, task_spec
from .model import PromptedT5
from .preflight import preflight
from .prompt_io import PROMPT_KEY, check_width, load_teacher_prompt, prompt_tensors
from .run_backbone import backbone_for_run, backbone_identity, check_same_backbone, recorded_backbone
from .tasks import TaskSpec

#: config stage → core stage preset (the T5 head trains MPT's three stages, under the core's names)
def embed_text_fn(backbone, tokenizer) -> Callable[[str], torch.Tensor]:
    """Text → token embeddings ``(n, d)`` of the backbone (for ``prompt.init: text``)."""
    def embed(text: str) -> torch.Tensor:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return backbone.get_input_embeddings().weight[torch.tensor(ids)].detach()
    return embed


#: what each mode calls its parts in results (``dev`` mode selects and reports on the same data)
CONVENTION = {
    "auto": "model selection on val, reported on test (val/test split: Compacter/ATTEMPT/DePT convention)",
    "dev": "selected AND reported on the eval split (selection.mode=dev: legacy, optimistic; not a held-out result)",
    "none": "no model selection: last step reported on the eval split (selection.mode=none)",
}


def resolve_data_root(value: str | None) -> str | None:
    """``data_root`` as given; unset (``None``): ``$MVLPT_DATA`` when set, else ``None`` (the hub);
    ``""``: ``$MVLPT_DATA``, else the shared data beside the checkout (``../shared/data``)."""
    if value:
        return str(Path(value).expanduser())
    root = shared_data_root() if value == "" else env_data_root()
    return None if root is None else str(root)


def build_parts(cfg: TextRunConfig, parts: Sequence[str] = ("train", "val", "test")) -> list[TaskParts]:
    """Every task of ``cfg`` split into ``parts`` (``selection``, caps and ``few_shot_k`` applied)."""
    root = resolve_data_root(cfg.data_root)
    return [task_parts(tc, cfg.selection, root, cfg.train.seed, cfg.few_shot_k, cfg.few_shot_seed, parts,
                       cfg.few_shot_if_too_few) for tc in cfg.tasks]


def consumed_runs(cfg: TextRunConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """``(key, path, config.json)`` of the runs a stage reads: its source run (target stage, ``init: source``)
    and its teachers run (source stage with distillation)."""
    pcfg = resolve_prompt_config(cfg.prompt, cfg.stage)  # type: ignore[arg-type]
    d = cfg.train.distill
    runs = []
    if pcfg.init == "source" and pcfg.source_path:
        runs.append(("prompt.source_path", pcfg.source_path))
    if cfg.stage == "source" and cfg.teacher_path and (d.kl_weight > 0 or d.mse_weight > 0):
        runs.append(("teacher_path", cfg.teacher_path))
    return [(key, path, load_run_prompts(path)[1]) for key, path in runs]


def stage_backbone(cfg: BackboneConfig, runs: Sequence[tuple[str, str, Mapping[str, Any]]]) -> BackboneConfig:
    """The stage's backbone: ``cfg`` where it names one, else that of the first run it reads, else ``t5-base``."""
    if cfg.name is not None:
        return cfg
    if runs:
        return backbone_for_run(cfg, *recorded_backbone(runs[0][2]))
    return replace(cfg, name=DEFAULT_NAME)


def part_datasets(cfg: TextRunConfig, tokenizer, plan: Sequence[TaskParts], part: str) -> list[TextTaskDataset]:
    """One tokenised dataset per task for ``part`` (evaluation parts are length-sorted)."""
    return [TextTaskDataset(tp.name, tp.examples[part], tokenizer, cfg.backbone.max_input_length,
                            cfg.backbone.max_target_length, sort_by_length=part != "train") for tp in plan]


def selection_meta(cfg: TextRunConfig, plan: Sequence[TaskParts]) -> dict[str, Any]:
    """``meta.selection`` of ``config.json``: the mode, seed, convention and each task's split."""
    return {"mode": cfg.selection.mode, "seed": cfg.selection.seed, "convention": CONVENTION[cfg.selection.mode],
            "tasks": {tp.name: tp.info for tp in plan}}


def build_prompt(cfg: TextRunConfig, backbone, tokenizer):
    """The stage's prompt module (source-initialised for the target stage, with a width check)."""
    pcfg = resolve_prompt_config(cfg.prompt, cfg.stage)  # type: ignore[arg-type]
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


def run_config_dict(cfg: TextRunConfig, d_model: int, resolved_prompt=None, backbone_config=None,
                    selection: Mapping[str, Any] | None = None,
                    backbone: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config saved with every checkpoint: the run config plus ``meta`` (task names, backbone sizes,
    ``selection``: how each task was split, ``backbone``: which backbone, see :mod:`text_mpt.run_backbone`)."""
    meta: dict[str, Any] = {"task_names": [task_spec(t).name for t in cfg.tasks], "d_model": d_model, "stage": cfg.stage}
    if backbone_config is not None:
        meta.update(num_heads=backbone_config.num_heads, num_layers=backbone_config.num_layers)
    if backbone is not None:
        meta["backbone"] = dict(backbone)
    if resolved_prompt is not None:
        meta["resolved_prompt"] = to_dict(resolved_prompt)
    if selection is not None:
        meta["selection"] = dict(selection)
    return {**to_dict(cfg), "meta": meta}


def results_rows(specs: list[TaskSpec], metrics: Mapping[str, float], split: str | None = None,
                 step: int | None = None) -> list[dict[str, Any]]:
    """One row per task (its metrics, score, n) and a final ``mean`` row; with ``split`` / ``step``
    given, every row names the part the numbers come from and the evaluated step."""
    head: dict[str, Any] = {}
    if split is not None:
        head["split"] = split
    if step is not None:
        head["step"] = step
    rows = per_task_rows(metrics, [s.name for s in specs], head)
    for row in rows:
        if "n" in row:
            row["n"] = int(row["n"])
    if "score" in metrics:
        rows.append({"task": "mean", **head, "score": metrics["score"]})
    return rows


def results_table(specs: list[TaskSpec], sections: Sequence[tuple[str, Mapping[str, float], int | None]]
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and columns of a run's results: per section ``(split, metrics, step)`` one row per task and a
    ``mean`` row, column ``split`` naming the part (written by :func:`mvlpt.core.results.write_run_results`)."""
    rows = [r for split, metrics, step in sections for r in results_rows(specs, metrics, split, step)]
    fixed = {"task", "split", "step", "score", "n"}
    cols = ["task", "split", "step", "score"] + sorted({k for r in rows for k in r} - fixed) + ["n"]
    return rows, cols


def split_notes(cfg: TextRunConfig, plan: Sequence[TaskParts]) -> list[str]:
    """One line per task saying where its val and test numbers come from."""
    out = []
    for tp in plan:
        caps = f"; each capped at max_eval_examples={tp.info['max_eval_examples']}" if tp.info["max_eval_examples"] else ""
        sizes = ", ".join(f"{p} {tp.info[p + '_examples']:,}" for p in ("train", "val", "test", "dev")
                          if f"{p}_examples" in tp.info)
        out.append(f"{tp.name}: {tp.info['description']}{caps}; examples used: {sizes}")
    return out


@dataclass
class StageModel:
    """What a stage trains, built by :func:`build_stage`: ``cfg`` (backbone and ``data_root`` resolved), the
    loaded backbone and tokenizer, the task ``specs``, the split ``plan`` and its tokenised ``train_ds`` /
    ``val_ds`` / ``test_ds`` (``val_ds`` None under ``selection.mode: none``; ``test_ds`` is ``val_ds`` under
    ``dev``), the resolved prompt config ``pcfg``, the student ``model`` (prompts freshly initialised), the
    ``teacher`` (source stage with distillation), the backbone ``identity`` and ``selection`` (``meta.selection``)."""

    cfg: TextRunConfig
    backbone: Any
    tokenizer: Any
    specs: list[TaskSpec]
    plan: list[TaskParts]
    train_ds: list[TextTaskDataset]
    val_ds: list[TextTaskDataset] | None
    test_ds: list[TextTaskDataset]
    pcfg: Any
    model: PromptedT5
    teacher: PromptedT5 | None
    identity: dict[str, Any]
    selection: dict[str, Any]

    def run_config(self) -> dict[str, Any]:
        """The ``config.json`` saved with every checkpoint of this stage (:func:`run_config_dict`)."""
        bcfg = self.backbone.config
        return run_config_dict(self.cfg, bcfg.d_model, self.pcfg, bcfg, selection=self.selection, backbone=self.identity)

    def trainer(self) -> Trainer:
        """The core :class:`~mvlpt.core.trainer.Trainer` of this stage, writing ``cfg.output_dir`` (= ``run_dir``)."""
        return Trainer(self.model, self.train_ds, TextCollator(self.tokenizer.pad_token_id), self.cfg.train,
                       self.cfg.output_dir, eval_datasets=self.val_ds, teacher=self.teacher,
                       run_config=self.run_config(), fresh=self.cfg.fresh,
                       eval_split={"dev": "dev", "none": None}.get(self.cfg.selection.mode, "val"))


def build_stage(cfg: TextRunConfig) -> StageModel:
    """The backbone, data, task model and teacher a stage trains (what :func:`train_stage` trains, after its
    preflight): the consumed runs checked, the prompts initialised under ``train.seed``."""
    seed_everything(cfg.train.seed)
    runs = consumed_runs(cfg)
    cfg = replace(cfg, backbone=stage_backbone(cfg.backbone, runs), data_root=resolve_data_root(cfg.data_root))
    backbone, tokenizer = load_backbone(cfg.backbone)
    identity = backbone_identity(cfg.backbone, backbone, tokenizer)
    specs = [task_spec(t) for t in cfg.tasks]
    mode = cfg.selection.mode
    plan = build_parts(cfg, ("train", "test") if mode == "none" else ("train", "val", "test"))
    train_ds = part_datasets(cfg, tokenizer, plan, "train")
    val_ds = part_datasets(cfg, tokenizer, plan, "val") if mode != "none" else None
    test_ds = val_ds if mode == "dev" else part_datasets(cfg, tokenizer, plan, "test")  # dev: the same data
    assert test_ds is not None
    torch.manual_seed(cfg.train.seed)
    prompt, pcfg = build_prompt(cfg, backbone, tokenizer)
    if pcfg.init == "source" and pcfg.source_path:
        check_consumed_run(pcfg.source_path, "source run", cfg.train.health.strict)
    d = cfg.train.distill
    teacher = None
    if cfg.stage == "source" and cfg.teacher_path and (d.kl_weight > 0 or d.mse_weight > 0):
        check_consumed_run(cfg.teacher_path, "teacher run", cfg.train.health.strict)
        t_prompt = load_teacher_prompt(cfg.teacher_path, [s.name for s in specs], backbone.config.d_model,
                                       cfg.backbone.name, pcfg.length, need_same_length=d.mse_weight > 0)
        teacher = make_model(cfg, backbone, tokenizer, specs, t_prompt, score_all=True)  # shares `backbone`
    for key, path, run_config in runs:
        check_same_backbone(identity, *recorded_backbone(run_config), path, key)
    model = make_model(cfg, backbone, tokenizer, specs, prompt, score_all=teacher is not None and d.kl_weight > 0)
    return StageModel(cfg, backbone, tokenizer, specs, plan, train_ds, val_ds, test_ds, pcfg, model, teacher,
                      identity, selection_meta(cfg, plan))


def train_stage(cfg: TextRunConfig, expected_stage: str | None = None) -> dict[str, Any]:
    """Train one stage end to end: select the best checkpoint on ``val``, report it on ``test``.

    Returns ``{"run_dir", "metrics" (= "test": the reported numbers), "val" (selection metrics of the
    reported step), "best_step" (the step reported), "step" (last step), "selection" (meta), "results"}``.
    """
    if expected_stage is not None and cfg.stage != expected_stage:
        cmd = "adapt" if cfg.stage == "target" else cfg.stage
        raise ConfigError(f"this is a {cfg.stage!r} config; run it with `text-mpt {cmd}`")
    preflight(cfg, "adapt" if cfg.stage == "target" else cfg.stage, resolve_data_root(cfg.data_root))
    built = build_stage(cfg)
    cfg, specs, plan, test_ds, sel_meta = built.cfg, built.specs, built.plan, built.test_ds, built.selection
    mode = cfg.selection.mode
    trainer = built.trainer()
    result = trainer.fit()  # refuses an output_dir holding a run of another config (unless fresh)
    # the best checkpoint on val (its prompts are the ones reported), or the last step without selection
    sel = trainer.evaluate_selected(result, test_ds, "test")
    test_metrics, step, val_metrics = sel["metrics"], sel["step"], sel["val_metrics"]
    if sel["selected"]:
        which = f"best checkpoint on val, step {step}" if mode == "auto" else f"best checkpoint, step {step}"
    else:
        which = f"last step {step}, no model selection"
    run_dir = Path(cfg.output_dir)
    if trainer.info.is_main:
        write_json(run_dir / "splits.json", {tp.name: {"val": tp.ids.get("val", []), "test": tp.ids["test"], **tp.info}
                                             for tp in plan})
    if mode == "auto":
        sections = [("test", test_metrics, step), ("val", val_metrics, step)]
    elif mode == "dev":
        sections = [("dev", test_metrics, step)]
    else:
        sections = [("test", test_metrics, step)]
    title = f"text-mpt {cfg.stage}: {cfg.output_dir} — {CONVENTION[mode]} ({which})"
    notes = ["split = test: reported numbers; split = val: model selection (never reported as the result)"
             if mode == "auto" else CONVENTION[mode]] + split_notes(cfg, plan)
    rows, cols = results_table(specs, sections)
    paths = write_run_results(run_dir, rows, title, cols, notes,
                              provenance_line(trainer.fingerprint)) if trainer.info.is_main else (
        run_dir / "results.md", run_dir / "results.csv")
    if trainer.info.is_main:
        append_run_health(paths[0], run_dir)
    return {"run_dir": cfg.output_dir, "metrics": test_metrics, "test": test_metrics, "val": val_metrics,
            "best_step": step, "step": result["step"], "selection": sel_meta, "results": paths}


def evaluate_run(cfg: TextRunConfig) -> dict[str, Any]:
    """Evaluate a trained run (``cfg.checkpoint``, default ``cfg.output_dir``: its best checkpoint) on
    ``selection.eval_part`` of ``cfg.tasks``: by default the reported ``test`` part, made with the same
    seeded split as training (same ``selection`` settings); ``val`` or ``dev`` (the full eval split) on request.

    Writes ``<output_dir>/eval/results.md|csv`` and ``metrics.jsonl``; the title names the part."""
    import warnings

    from .inference import load_trained

    path = cfg.checkpoint or cfg.output_dir
    preflight(cfg, "eval", resolve_data_root(cfg.data_root))
    model, tokenizer, run_cfg = load_trained(path, [task_spec(t) for t in cfg.tasks], backbone_cfg=cfg.backbone,
                                             eval_cfg=cfg.eval)
    part = cfg.selection.eval_part
    if part != "dev" and to_dict(run_cfg.selection) != to_dict(cfg.selection):
        warnings.warn(f"{path} was trained with selection={to_dict(run_cfg.selection)} but this config has "
                      f"selection={to_dict(cfg.selection)}: its {part} part may differ from the run's", stacklevel=2)
    plan = build_parts(cfg, (part,))
    eval_ds = part_datasets(cfg, tokenizer, plan, part)
    out_dir = Path(cfg.output_dir) / "eval"
    info, device = eval_context(cfg.train)  # evaluation only: no training data, no Trainer
    log = MetricsLogger(out_dir, enabled=info.is_main, tensorboard=cfg.train.tensorboard)
    metrics = evaluate(model, eval_ds, TextCollator(tokenizer.pad_token_id), cfg.train, info, device)
    log.log(0, part, metrics)
    log.close()
    what = {"test": "the reported test part (same seeded split as training)", "val": "the val part (model selection)",
            "dev": "the full eval split (it contains the val half under the small rule)"}[part]
    title = f"text-mpt eval: {path} on {what}"
    rows, cols = results_table(model.specs, [(part, metrics, None)])
    paths = write_run_results(out_dir, rows, title, cols, [f"selection.eval_part={part}"] + split_notes(cfg, plan),
                              provenance_line(fingerprint(to_dict(cfg))))
    return {"run_dir": str(out_dir), "metrics": metrics, "split": part, "selection": selection_meta(cfg, plan),
            "results": paths}
