"""Stage runners: teachers → source → target (and the single-task and zero-shot baselines).

Every trained stage is the same function, :func:`run_training`, over the one training loop
(:class:`mvlpt.core.Trainer`); stages differ only in data (sources or target), the prompt preset
of :class:`~mvlpt.clip.task_model.CLIPTaskModel` (``stage``) and a preparation hook: the source
stage loads the teachers, the target stage points its prompts at the source run. Which prompt
(CoOp text, VPT visual, UPT unified) is ``prompt.method`` — the runners never branch on it.

Each run directory holds ``config.json`` (the resolved run config, incl. each task's class
names), ``checkpoints/``, ``metrics.jsonl`` and ``results.md`` / ``results.csv`` (one row per task).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from datasets_vl import collate_vl
from mvlpt.clip.backbone import Backbone, create_backbone
from mvlpt.clip.task_model import CLIPTaskModel, TaskInfo
from mvlpt.clip.zeroshot import CLIPZeroShot
from mvlpt.core.checkpoint import CONFIG_FILE, load_tensors, read_json, resolve_prompts_file
from mvlpt.core.config import to_dict
from mvlpt.core.errors import ConfigError
from mvlpt.core.evaluation import eval_context, evaluate
from mvlpt.core.health import add_problems, check_consumed_run
from mvlpt.core.logging_utils import MetricsLogger
from mvlpt.core.provenance import provenance_line
from mvlpt.core.results import RESULTS, append_run_health, per_task_rows, write_run_results
from mvlpt.core.run_dir import bind_run_dir, clear_run_dir, fingerprint
from mvlpt.core.run_lock import LOCK_FILE, RunLock
from mvlpt.core.runtime import seed_everything
from mvlpt.core.stages import TRAINED_STAGES
from mvlpt.core.trainer import Trainer

from .compat import check_compatible, check_same_tasks, read_run_config
from .data import RunTask, data_report, load_run_tasks, selects_on_val, shots_run_dir, write_manifests
from .report import with_data, write_data_report
from .preflight import preflight
from .run_config import CLIPRunConfig, config_for_stage, config_from_run


@dataclass
class StageResult:
    """What a stage run produced.

    ``metrics`` are on ``split`` (the config's ``eval_split``, ``test`` by default). ``selection``
    is None when no checkpoint was selected (the last step is reported), else
    ``{"split": "val", "sources": {task: "split" | "holdout"}, "metric", "best_step", "score",
    "val_metrics"}``: the checkpoint of ``best_step``, best on val by ``metric``, gave ``metrics``."""

    stage: str
    run_dir: Path
    metrics: dict[str, float]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    time_s: float = 0.0
    split: str = "test"
    selection: dict[str, Any] | None = None

    @property
    def checkpoint_step(self) -> int:
        """The step whose prompts gave ``metrics`` (the best step on val, or the last step)."""
        if self.selection and self.selection.get("best_step") is not None:
            return int(self.selection["best_step"])
        return self.steps

    def accuracy(self, task: str | None = None) -> float:
        """A task's accuracy (default: the only / first task), else the overall score."""
        name = task or (self.tasks[0]["name"] if self.tasks else None)
        return float(self.metrics.get(f"{name}/accuracy", self.metrics.get("score", math.nan)))


def task_infos(infos: list[dict[str, Any]]) -> list[TaskInfo]:
    """Saved task descriptions (``resolved_tasks``) → the model's :class:`TaskInfo` list."""
    return [TaskInfo(i["name"], i["task_type"], list(i["classnames"]), i["template"]) for i in infos]


# --------------------------------------------------------------------------------------------
# stage preparation hooks: (cfg, backbone, tasks) -> (cfg, teacher model or None)

def _prepare_plain(cfg: CLIPRunConfig, bb: Backbone, tasks: list[RunTask]) -> tuple[CLIPRunConfig, Any]:
    return cfg, None


def _vanilla_prompts(cfg: CLIPRunConfig, what: str) -> CLIPRunConfig:
    """``source_mode: mvlpt``: vanilla text / visual prompts (:meth:`CLIPPromptConfig.as_vanilla`)."""
    return dataclasses.replace(cfg, prompt=cfg.prompt.as_vanilla(what))


def _prepare_source_mvlpt(cfg: CLIPRunConfig, bb: Backbone, tasks: list[RunTask]) -> tuple[CLIPRunConfig, Any]:
    """The official MVLPT source stage: one vanilla prompt shared by every source task
    (``prompt.shared_prompt``), softmax over the union of all classification sources' classes (VQA
    sources keep their own answer candidates), no teacher (teacher settings are ignored)."""
    if not any(t.task.task_type == "classification" for t in tasks):
        raise ConfigError("source_mode: mvlpt scores samples against the union of the source classes: it needs at "
                          f"least one classification source; {[t.task.name for t in tasks]} are all VQA")
    cfg = _vanilla_prompts(cfg, "one prompt shared by all source tasks")
    cfg = dataclasses.replace(cfg, prompt=dataclasses.replace(cfg.prompt, shared_prompt=True), teacher_path=None)
    return cfg, None


def _prepare_source(cfg: CLIPRunConfig, bb: Backbone, tasks: list[RunTask]) -> tuple[CLIPRunConfig, Any]:
    """Load the teacher run (vanilla prompts per source task) as a frozen task model sharing the backbone
    (``source_mode: mvlpt``: no teacher, see :func:`_prepare_source_mvlpt`)."""
    if cfg.source_mode == "mvlpt":
        return _prepare_source_mvlpt(cfg, bb, tasks)
    path = cfg.resolved_teacher_path()
    tcfg, prompts_file = read_run_config(path, "teacher run")
    if tcfg is None:
        raise ConfigError(f"teacher run {path}: no config.json next to {prompts_file}; give a teacher run directory")
    check_compatible(tcfg, cfg, "teacher run", path)
    check_consumed_run(path, "teacher run", cfg.train.health.strict)
    names = [t.task.name for t in tasks]
    check_same_tasks(tcfg, names, "teacher run", path)
    teacher = CLIPTaskModel(bb.model, bb.tokenizer, task_infos([t.info() for t in tasks]), tcfg.prompt, "teachers")
    teacher.load_trainable_state_dict(load_tensors(prompts_file))
    return dataclasses.replace(cfg, teacher_path=str(path)), teacher


def _prepare_target(cfg: CLIPRunConfig, bb: Backbone, tasks: list[RunTask]) -> tuple[CLIPRunConfig, Any]:
    """Point the prompts at the source run (``P*`` + mean factors) after checking it fits.
    ``source_mode: mvlpt``: a vanilla prompt initialised from the source's shared prompt, all of it trains."""
    path = cfg.resolved_source_path()
    scfg, _ = read_run_config(path, "source run")
    if scfg is not None:
        check_compatible(scfg, cfg, "source run", path)
        check_consumed_run(path, "source run", cfg.train.health.strict)
        if scfg.stage == "source" and scfg.source_mode != cfg.source_mode:
            raise ConfigError(f"source run {path} was trained with source_mode: {scfg.source_mode}, but this target "
                              f"run has source_mode: {cfg.source_mode}; set source_mode: {scfg.source_mode} or point "
                              "source_path at a matching source run")
    if cfg.source_mode == "mvlpt":
        cfg = _vanilla_prompts(cfg, "the target fine-tunes the source's shared prompt")
    prompt = cfg.prompt
    for part in ("text", "visual"):
        sub = getattr(prompt, part)
        if not sub.source_path:
            prompt = dataclasses.replace(prompt, **{part: dataclasses.replace(sub, source_path=str(path))})
    return dataclasses.replace(cfg, prompt=prompt, source_path=str(path)), None


PREPARE: dict[str, Callable[[CLIPRunConfig, Backbone, list[RunTask]], tuple[CLIPRunConfig, Any]]] = {
    "teachers": _prepare_plain,
    "single": _prepare_plain,
    "source": _prepare_source,
    "target": _prepare_target,
}
assert set(PREPARE) == set(TRAINED_STAGES), "one preparation hook per trained stage (mvlpt.core.stages)"


# --------------------------------------------------------------------------------------------
# runners

def _steps(cfg: CLIPRunConfig, tasks: list[RunTask]) -> CLIPRunConfig:
    """``train_epochs`` → ``train.max_steps`` as Dassl/CoOp's train loader counts an epoch.

    With ``n`` the stage's training examples over all its tasks (after few-shot sampling, the
    validation hold-out and ``max_train``): the batch is ``min(n, batch_size)`` (Dassl's loader
    uses ``drop_last`` only when ``n >= batch_size``), so ``train.batch_size`` becomes ``n`` when
    ``n`` is smaller (``eval_batch_size`` 0 is set to the configured batch size, so evaluation
    keeps its batch), and an epoch is ``max(1, ⌊n / batch⌋)`` batches. ``max_steps`` =
    ``max(1, ⌈epochs × batches per epoch / grad_accum_steps⌉)``. E.g. 10 examples (10 classes × K=1),
    batch 32, 50 epochs → 50 steps of batch 10 (not ⌈50 × 10 / 32⌉ = 16); 100 examples, batch 32,
    2 epochs → 2 × 3 = 6 steps."""
    if cfg.train_epochs <= 0:
        return cfg
    n = sum(len(t.train) for t in tasks if t.train is not None)
    train = cfg.train
    if 0 < n < train.batch_size:
        train = dataclasses.replace(train, batch_size=n, eval_batch_size=train.eval_batch_size or train.batch_size)
    per_epoch = max(1, n // train.batch_size)
    steps = max(1, math.ceil(cfg.train_epochs * per_epoch / train.grad_accum_steps))
    return dataclasses.replace(cfg, train=dataclasses.replace(train, max_steps=steps))


def _set_threads(cfg: CLIPRunConfig) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)


def _selection_rows(metrics: dict[str, float], names: list[str], split: str, step: int,
                    selection: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per task naming where each number comes from: ``checkpoint`` (best on val / last
    step), its ``step``, ``val_<metric>`` (the selected checkpoint on val, when selecting) and
    ``<split>_<metric>`` (the reported split)."""
    val_rows = {r["task"]: r for r in per_task_rows(selection["val_metrics"], names)} if selection else {}
    rows = []
    for row in per_task_rows(metrics, names):
        name = row.pop("task")
        out: dict[str, Any] = {"task": name}
        if selection:
            out.update(checkpoint=f"best on val ({selection['sources'].get(name, '?')})", step=step)
            out.update({f"val_{k}": v for k, v in val_rows.get(name, {}).items() if k != "task"})
        else:
            out.update(checkpoint="last step", step=step)
        out.update({f"{split}_{k}": v for k, v in row.items()})
        rows.append(out)
    return rows


def _select_and_test(trainer: Trainer, tasks: list[RunTask], out: dict[str, Any],
                     cfg: CLIPRunConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Load the best-on-val checkpoint (``checkpoints/best``) and evaluate it on the reported split."""
    res = trainer.evaluate_selected(out, [t.eval for t in tasks], cfg.eval_split)
    metrics, step, val_metrics = res["metrics"], res["step"], res["val_metrics"]
    best = out.get("best") or {}
    note = "" if res["selected"] else "no best checkpoint (select_metric missing from the val metrics): last step"
    selection = {"split": "val", "sources": {t.task.name: t.val_source for t in tasks},
                 "metric": cfg.train.select_metric, "mode": cfg.train.select_mode, "best_step": int(step),
                 "score": best.get("score"), "val_metrics": val_metrics,
                 "val_sizes": {t.task.name: len(t.val) for t in tasks}}
    if note:
        selection["note"] = note
    return metrics, selection


def init_run_dir(cfg: CLIPRunConfig, tasks: list[RunTask], run_dir: Path) -> None:
    """Before a stage trains in ``run_dir``: clear it under ``fresh`` (before the manifests are written:
    they belong to the new run; the Trainer binds it), then write the few-shot manifests."""
    if cfg.fresh:
        with RunLock(run_dir):
            clear_run_dir(run_dir, keep=(LOCK_FILE,))
    write_manifests(tasks, run_dir)


@dataclass
class StageModel:
    """What a trained stage trains, built by :func:`build_stage_model`: ``cfg`` resolved (prepared by the
    stage's hook, ``max_steps`` from ``train_epochs``, ``resolved_tasks``, ``run_dir``), the loaded ``tasks``,
    the student ``model`` (prompts freshly initialised), the ``teacher`` (source stage) and ``select``
    (whether the periodic evaluations run on validation sets and pick the checkpoint)."""

    cfg: CLIPRunConfig
    tasks: list[RunTask]
    model: CLIPTaskModel
    teacher: CLIPTaskModel | None
    select: bool
    run_dir: Path

    def trainer(self) -> Trainer:
        """The core :class:`~mvlpt.core.trainer.Trainer` of this stage (per-task training sets, ``collate_vl``,
        the validation sets when selecting, else the reported split; the resolved config binds ``run_dir``)."""
        return Trainer(self.model, [t.train for t in self.tasks], collate_vl, self.cfg.train, self.run_dir,
                       eval_datasets=[t.val if self.select else t.eval for t in self.tasks], teacher=self.teacher,
                       run_config=to_dict(self.cfg), eval_split="val" if self.select else self.cfg.eval_split)


def build_stage_model(cfg: CLIPRunConfig, bb: Backbone, tasks: list[RunTask], run_dir: Path) -> StageModel:
    """The task model (and teacher) a trained stage starts from, the one :func:`run_training` trains:
    the stage's preparation hook, then the prompts initialised under ``train.seed``."""
    cfg, teacher = PREPARE[cfg.stage](cfg, bb, tasks)
    cfg = _steps(cfg, tasks)
    infos = [t.info() for t in tasks]
    cfg = dataclasses.replace(cfg, resolved_tasks=infos, run_dir=str(run_dir))
    select = all(t.val is not None for t in tasks) and selects_on_val(cfg)
    seed_everything(cfg.train.seed)  # prompt initialisation does not depend on what was loaded before
    model = CLIPTaskModel(bb.model, bb.tokenizer, task_infos(infos), cfg.prompt, cfg.stage)
    return StageModel(cfg, tasks, model, teacher, select, Path(run_dir))


def run_training(cfg: CLIPRunConfig, backbone: Backbone | None = None) -> StageResult:
    """Train the prompts of ``cfg.stage`` (teachers, source, target or single) and evaluate them.

    With evaluation during training (``train.eval_every > 0`` or an explicit ``data.val_source``,
    see :func:`~mvlpt.clip.pipeline.data.selects_on_val`) the periodic evaluations run on each
    task's validation set (its ``val`` split or a hold-out of its training data, never test), the
    Trainer keeps the best one in ``checkpoints/best``, and that checkpoint is evaluated on
    ``eval_split``: those are the reported metrics. Without it, the last step is evaluated on
    ``eval_split`` and reported (``checkpoint: last step``). ``results.md``/``.csv`` name the split
    and checkpoint of every number."""
    if cfg.stage not in TRAINED_STAGES:
        raise ConfigError(f"stage {cfg.stage!r} does not train; trained stages are {sorted(TRAINED_STAGES)}")
    t0 = time.perf_counter()
    _set_threads(cfg)
    seed_everything(cfg.train.seed)
    bb = backbone or create_backbone(cfg.backbone)
    tasks = load_run_tasks(cfg, bb.preprocess)
    run_dir = shots_run_dir(cfg, cfg.resolved_run_dir(), tasks)  # k24of32_s1 when K was lowered
    init_run_dir(cfg, tasks, run_dir)
    built = build_stage_model(cfg, bb, tasks, run_dir)
    cfg, select, infos = built.cfg, built.select, built.cfg.resolved_tasks
    trainer = built.trainer()
    out = trainer.fit()  # refuses a run of another config in run_dir (cleared above when cfg.fresh)
    names = [i["name"] for i in infos]
    selection = None
    if select:
        metrics, selection = _select_and_test(trainer, tasks, out, cfg)
        step = selection["best_step"]
        title = (f"{cfg.stage} ({cfg.method}): {cfg.eval_split} metrics of the checkpoint best on val "
                 f"(step {step} of {int(out['step'])}, by {cfg.train.select_metric})")
    else:
        metrics, step = dict(out["final"]), int(out["step"])
        title = (f"{cfg.stage} ({cfg.method}): {cfg.eval_split} metrics at the last step ({step}); "
                 "no model selection (train.eval_every = 0)")
    report = data_report(tasks, metrics, cfg.eval_split)
    write_run_results(run_dir, with_data(_selection_rows(metrics, names, cfg.eval_split, step, selection), report,
                                         cfg.eval_split), title=title, provenance=provenance_line(trainer.fingerprint))
    write_data_report(run_dir, report)
    if cfg.stage == "teachers" and cfg.train.health.enabled:
        _teachers_vs_zeroshot(trainer, bb, infos, tasks, metrics, cfg, run_dir)
    append_run_health(run_dir / f"{RESULTS}.md", run_dir)
    return StageResult(cfg.stage, run_dir, metrics, infos, int(out["step"]), time.perf_counter() - t0,
                       split=cfg.eval_split, selection=selection)


def _teachers_vs_zeroshot(trainer: Trainer, bb: Backbone, infos: list[dict[str, Any]], tasks: list[RunTask],
                          metrics: dict[str, float], cfg: CLIPRunConfig, run_dir: Path) -> None:
    """A teacher that does not beat zero-shot CLIP (hand template) on its own task is a problem of the
    teachers stage: recorded in ``health.json`` (warning; an error under ``train.health.strict``)."""
    zs = CLIPZeroShot(bb.model, bb.tokenizer, task_infos(infos), [i["templates"] for i in infos])
    zs_metrics = trainer.evaluate([t.eval for t in tasks], model=zs)
    problems = []
    for info in infos:
        key = f"{info['name']}/accuracy"
        if info["task_type"] == "classification" and key in metrics and key in zs_metrics and metrics[key] <= zs_metrics[key]:
            problems.append(f"teacher {info['name']}: {cfg.eval_split} accuracy {metrics[key]:.1f} does not beat zero-shot "
                            f"CLIP with the hand template ({zs_metrics[key]:.1f}): the prompt learned nothing the "
                            "template does not already give (e.g. the backbone was pretrained on these captions), "
                            "or the learning rate is off")
    add_problems(run_dir, problems, {f"zeroshot/{k}": v for k, v in zs_metrics.items() if k.endswith("/accuracy")},
                 cfg.train.health.strict)


def run_zeroshot(cfg: CLIPRunConfig, backbone: Backbone | None = None) -> StageResult:
    """Zero-shot CLIP with hand templates (each task's single template, or its ensemble)."""
    t0 = time.perf_counter()
    _set_threads(cfg)
    bb = backbone or create_backbone(cfg.backbone)
    run_dir = cfg.resolved_run_dir()
    tasks = load_run_tasks(cfg, bb.preprocess, run_dir, need_train=False)
    infos = [t.info() for t in tasks]
    cfg = dataclasses.replace(cfg, resolved_tasks=infos, run_dir=str(run_dir))
    key = "ensemble_templates" if cfg.zeroshot_ensemble else "templates"
    model = CLIPZeroShot(bb.model, bb.tokenizer, task_infos(infos), [i[key] for i in infos])
    info, device = eval_context(cfg.train)  # evaluation only: no training data, no Trainer
    with RunLock(run_dir):  # a run of another config here is refused, as for trained stages
        bind_run_dir(run_dir, to_dict(cfg), cfg.fresh, keep=(LOCK_FILE,))
        metrics = evaluate(model, [t.eval for t in tasks], collate_vl, cfg.train, info, device)
        log = MetricsLogger(run_dir, enabled=info.is_main)
        log.truncate_after(-1)  # one eval line per run, however often it is re-run
        log.log(0, "eval", metrics)
        log.close()
    names = [i["name"] for i in infos]
    kind = "template ensemble" if cfg.zeroshot_ensemble else "single template"
    report = data_report(tasks, metrics, cfg.eval_split)
    write_run_results(run_dir, with_data(per_task_rows(metrics, names), report, cfg.eval_split),
                      title=f"zero-shot CLIP ({kind}) on {cfg.eval_split}", provenance=provenance_line(fingerprint(to_dict(cfg))))
    write_data_report(run_dir, report)
    return StageResult("zeroshot", run_dir, metrics, infos, 0, time.perf_counter() - t0, split=cfg.eval_split)


RUNNERS: dict[str, Callable[..., StageResult]] = {**{s: run_training for s in TRAINED_STAGES}, "zeroshot": run_zeroshot}


def run_stage(cfg: CLIPRunConfig, backbone: Backbone | None = None) -> StageResult:
    """Run ``cfg.stage``. Without a ``backbone`` (a command's entry) its data, consumed runs, output and
    backbone are checked first (:func:`~.preflight.preflight`); sweep cells share a loaded one and skip it."""
    if backbone is None:
        preflight(cfg, cfg.stage)
    return RUNNERS[cfg.stage](cfg, backbone)


def _staged(stage: str) -> Callable[..., StageResult]:
    def run(cfg: CLIPRunConfig, backbone: Backbone | None = None) -> StageResult:
        return run_stage(config_for_stage(cfg, stage), backbone)

    run.__name__ = f"run_{stage}"
    run.__doc__ = (f"Run the {stage} stage of an experiment config (its ``stages.{stage}`` section merged in, "
                   "see :func:`~mvlpt.clip.pipeline.run_config.config_for_stage`).")
    return run


run_teachers = _staged("teachers")
run_source = _staged("source")
run_target = _staged("target")
run_single = _staged("single")


@dataclass(frozen=True)
class SavedRun:
    """A run directory's saved config, read once per command and passed down: ``cfg`` (its ``config.json``)
    and ``prompts_file`` (the best / latest ``prompts.safetensors``; None for a zero-shot run)."""

    path: Path
    cfg: CLIPRunConfig
    prompts_file: Path | None = None

    @property
    def trained(self) -> bool:
        return self.prompts_file is not None


def read_run(run_dir: str | Path, what: str = "trained run", zeroshot: bool = False) -> SavedRun:
    """Read a run's ``config.json`` once: a trained run's (next to its best / latest prompts) or, with
    ``zeroshot``, for a directory without prompts, a zero-shot run's. Anything else is refused (what was
    found, what to give)."""
    run_dir = Path(run_dir)
    try:
        resolve_prompts_file(run_dir)
    except FileNotFoundError:
        saved = run_dir / CONFIG_FILE
        raw = read_json(saved) if zeroshot and saved.is_file() else {}
        if raw.get("stage") == "zeroshot":
            return SavedRun(run_dir, config_from_run(raw, f"run {run_dir}"))
    found, prompts_file = read_run_config(run_dir, what)  # no prompts: its "not found" error
    if found is None:
        raise ConfigError(f"{run_dir}: no config.json; give a run directory written by `mvlpt`")
    return SavedRun(run_dir, found, prompts_file)


def _trained(run: str | Path | SavedRun) -> SavedRun:
    run = run if isinstance(run, SavedRun) else read_run(run)
    if not run.trained or run.cfg.stage not in TRAINED_STAGES:
        raise ConfigError(f"{run.path} is a {run.cfg.stage!r} run with no trained prompts")
    return run


def load_trained(run_dir: str | Path | SavedRun, backbone: Backbone | None = None,
                 infos: list[dict[str, Any]] | None = None) -> tuple[CLIPRunConfig, CLIPTaskModel, Backbone]:
    """A trained run's task model: its backbone and prompts (from ``config.json`` and the best /
    latest ``prompts.safetensors``), for its own tasks or for ``infos`` (e.g. a base run
    evaluated on the new classes). No source or teacher run is needed. ``run_dir``: a run directory
    or a :class:`SavedRun` already read by the command (its config is not read again)."""
    run = _trained(run_dir)
    found, prompts_file = run.cfg, run.prompts_file
    assert prompts_file is not None
    bb = backbone or create_backbone(found.backbone)
    check_compatible(found, dataclasses.replace(found, backbone=bb.config), "trained run", run.path)
    prompt = found.prompt
    for part in ("text", "visual"):  # tensors come from the checkpoint, not from a source run
        sub = getattr(prompt, part)
        if sub.init == "source" or (sub.init == "auto" and found.stage == "target"):
            prompt = dataclasses.replace(prompt, **{part: dataclasses.replace(sub, init="random", source_path=None)})
    model = CLIPTaskModel(bb.model, bb.tokenizer, task_infos(infos or found.resolved_tasks), prompt, found.stage)
    model.load_trainable_state_dict(load_tensors(prompts_file))
    return found, model.eval(), bb


def evaluate_trained(run_dir: str | Path | SavedRun, cfg: CLIPRunConfig,
                     backbone: Backbone | None = None) -> dict[str, float]:
    """Evaluate a trained run's prompts on the tasks of ``cfg`` (e.g. the new classes of its target), with the
    run's loop settings; its ``config.json`` is read once, no training data is touched."""
    run = _trained(run_dir)
    bb = backbone or create_backbone(run.cfg.backbone)
    tasks = load_run_tasks(cfg, bb.preprocess, None, need_train=False)
    _, model, _ = load_trained(run, bb, [t.info() for t in tasks])
    return evaluate(model, [t.eval for t in tasks], collate_vl, run.cfg.train)


__all__ = ["RUNNERS", "SavedRun", "StageModel", "StageResult", "build_stage_model", "config_from_run", "evaluate_trained",
           "init_run_dir", "load_trained", "read_run", "run_single", "run_source", "run_stage", "run_target", "run_teachers", "run_training", "run_zeroshot"]
