"""The run configuration of the CLIP pipeline: one YAML file describes a whole experiment.

A config names the backbone, the prompt method and its shapes, the source tasks and the
target task, the training loop, and (optionally) per-stage sections and a few-shot sweep.
Each command (``mvlpt teachers|source|adapt|zeroshot|fewshot``) picks its stage from it:
:func:`config_for_stage` merges the stage's section (``stages.<stage>``) over the top level,
then re-applies the command-line ``key=value`` overrides, so those always win.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from mvlpt.clip.backbone import BackboneConfig
from mvlpt.clip.prompt_config import CLIPPromptConfig
from mvlpt.core.config import ConfigError, apply_overrides, from_dict, load_config, read_yaml, to_dict
from mvlpt.core.train_config import TrainConfig

Stage = Literal["teachers", "source", "target", "single", "zeroshot"]
STAGES: tuple[str, ...] = ("teachers", "source", "target", "single", "zeroshot")
#: stages whose tasks are the source tasks (the others run on the target)
SOURCE_STAGES = ("teachers", "source")


@dataclass
class TaskEntry:
    """One task of a run: a ``datasets_vl`` dataset and how much of it to use.

    Attributes:
        dataset: a registry name (``digits``, ``easy_vqa``, ``oxford_pets``, ...) or a
            ``datasets_vl.DatasetSpec`` mapping (``{name, source, root, data_files, ...}``).
        shots: K training examples per class (per answer for VQA), CoOp's sampling; 0 = full train split.
        seed: few-shot sampling seed.
        classes: ``all`` classes, or CoOp's ``base`` / ``new`` half (base-to-new generalisation).
        max_train: cap on training examples after few-shot sampling (0 = all), for quick runs.
        max_eval: cap on evaluation examples (a seeded random subset; 0 = all).
        hflip: random horizontal flips in training (``null`` = ``data.hflip``); off for digits/text.
    """

    dataset: str | dict[str, Any]
    shots: int = 0
    seed: int = 1
    classes: Literal["all", "base", "new"] = "all"
    max_train: int = 0
    max_eval: int = 0
    hflip: bool | None = None

    @property
    def name(self) -> str:
        """The task name (the dataset's ``name``)."""
        return self.dataset if isinstance(self.dataset, str) else str(self.dataset.get("name", ""))

    def validate(self) -> None:
        if not self.name:
            raise ConfigError(f"task {self.dataset!r}: a dataset mapping needs a 'name'")
        for key in ("shots", "max_train", "max_eval"):
            if getattr(self, key) < 0:
                raise ConfigError(f"task {self.name}: {key} must be >= 0, found {getattr(self, key)}")


def as_task(entry: TaskEntry | str | Mapping[str, Any]) -> TaskEntry:
    """A dataset name, a ``TaskEntry`` mapping or a ``DatasetSpec`` mapping → :class:`TaskEntry`."""
    if isinstance(entry, TaskEntry):
        return entry
    if isinstance(entry, str):
        return TaskEntry(dataset=entry)
    if isinstance(entry, Mapping) and "dataset" in entry:
        return from_dict(TaskEntry, entry, "task")
    if isinstance(entry, Mapping):
        return from_dict(TaskEntry, {"dataset": dict(entry)}, "task")
    raise ConfigError(f"a task must be a dataset name or a mapping, found {entry!r}")


@dataclass
class DataConfig:
    """Where the data lives and how training images are augmented.

    Attributes:
        root: data root for registry datasets (``null`` → ``$MVLPT_DATA``, then ``./data``).
        train_augment: CoOp's random resized crop (+ flip) on training images.
        hflip: default of the tasks' ``hflip``.
        crop_scale: scale range of the random resized crop.
    """

    root: str | None = None
    train_augment: bool = True
    hflip: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)


@dataclass
class MethodSpec:
    """One line of a few-shot sweep.

    Attributes:
        name: label in the table and the plot (``ZS-CLIP``, ``CoOp``, ``MCoOp``, ...).
        stage: ``zeroshot`` (hand templates), ``single`` (prompt from scratch on the target) or
            ``target`` (multitask: initialised from the source run of the same prompt method).
        method: prompt method ``coop`` | ``vpt`` | ``upt`` (``null`` = the config's ``prompt.method``).
        ensemble: zero-shot with the template ensemble instead of the single template.
        overrides: config mapping merged over this method's runs (e.g. ``{train: {max_steps: 50}}``).
    """

    name: str
    stage: Literal["zeroshot", "single", "target"] = "single"
    method: Literal["coop", "vpt", "upt"] | None = None
    ensemble: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepConfig:
    """Methods × shots × seeds of ``mvlpt fewshot`` on the target task.

    Attributes:
        methods: the lines of the table / plot.
        shots: K values.
        seeds: few-shot sampling and training seeds.
        epochs_by_shots: ``train_epochs`` per K (e.g. CoOp's ``{1: 50, 2: 100, 4: 100, 8: 200, 16: 200}``);
            K values not listed use the config's ``train_epochs`` / ``train.max_steps``.
        base_to_new: train on the target's base classes; report base, new and their harmonic mean.
        out_dir: results folder (``null`` → ``<output_dir>/fewshot_<target>``).
    """

    methods: list[MethodSpec] = field(default_factory=lambda: [
        MethodSpec("ZS-CLIP", "zeroshot"), MethodSpec("CoOp", "single", "coop"), MethodSpec("MCoOp", "target", "coop")])
    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    epochs_by_shots: dict[int, float] = field(default_factory=dict)
    base_to_new: bool = False
    out_dir: str | None = None

    def validate(self) -> None:
        if not self.methods:
            raise ConfigError("sweep.methods must list at least one method")
        names = [m.name for m in self.methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"sweep.methods: duplicate method names {dup}")
        if not self.shots or any(k < 1 for k in self.shots):
            raise ConfigError(f"sweep.shots must be positive K values, found {self.shots}")
        if not self.seeds:
            raise ConfigError("sweep.seeds must list at least one seed")


@dataclass
class CLIPRunConfig:
    """A CLIP prompt-tuning run (or a whole source → few-shot experiment).

    Attributes:
        stage: ``teachers`` | ``source`` | ``target`` | ``single`` | ``zeroshot`` (set by the command).
        backbone: the frozen CLIP (open_clip name + pretrained tag, a model config + checkpoint, or tiny-clip).
        prompt: prompt method (coop / vpt / upt) and the text / visual prompt shapes.
        train: the training loop (optimizer, schedule, steps, batch, distillation weights).
        data: data root and augmentation.
        sources: source tasks (teachers and source stages).
        target: target task (target, single and zeroshot stages, few-shot sweeps).
        output_dir: where runs go; stage runs default to ``<output_dir>/<stage>_<method>[_<target>...]``.
        run_dir: this run's directory (``null`` → the default above).
        teacher_path: teacher run of the source stage (``null`` → ``<output_dir>/teachers_<method>``).
        source_path: source run of the target stage (``null`` → ``<output_dir>/source_<method>``).
        eval_split: split every run is evaluated on (``test``, or ``val`` where the task has one).
        train_epochs: when > 0, ``train.max_steps`` = ⌈epochs × training examples / batch size⌉
            (CoOp counts epochs; handy in few-shot sweeps where the data size changes with K).
        zeroshot_ensemble: zero-shot stage uses each task's template ensemble.
        threads: torch CPU threads (0 = torch's default). Tiny models on a shared or small CPU
            often run faster on 1 thread than on several.
        stages: per-stage config sections merged over the top level (``{teachers: {train: {...}}}``).
        sweep: the few-shot sweep of ``mvlpt fewshot``.
        overrides: command-line ``key=value`` overrides, re-applied over every stage section.
        resolved_tasks: written by the runner: each task's name, type, class names and templates
            (what ``predict`` needs without the data).
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    prompt: CLIPPromptConfig = field(default_factory=CLIPPromptConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stage: Stage = "target"
    sources: list[TaskEntry | str | dict[str, Any]] = field(default_factory=list)
    target: TaskEntry | str | dict[str, Any] | None = None
    output_dir: str = "runs/clip"
    run_dir: str | None = None
    teacher_path: str | None = None
    source_path: str | None = None
    eval_split: Literal["test", "val"] = "test"
    train_epochs: float = 0.0
    zeroshot_ensemble: bool = False
    threads: int = 0
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    overrides: list[str] = field(default_factory=list)
    resolved_tasks: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sources = [as_task(t) for t in self.sources]
        self.target = as_task(self.target) if self.target is not None else None

    def validate(self) -> None:
        bad = sorted(set(self.stages) - set(STAGES))
        if bad:
            raise ConfigError(f"stages: unknown stage section(s) {bad}; valid: {', '.join(STAGES)}")
        if self.train_epochs < 0:
            raise ConfigError(f"train_epochs must be >= 0, found {self.train_epochs}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = torch's default), found {self.threads}")

    # -- derived ------------------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.prompt.method

    def tasks(self) -> list[TaskEntry]:
        """The tasks of this run's stage: the sources, or the target."""
        if self.stage in SOURCE_STAGES:
            if not self.sources:
                raise ConfigError(f"stage {self.stage!r} trains on the source tasks: set 'sources' (a list of datasets)")
            return list(self.sources)  # type: ignore[arg-type]
        if self.target is None:
            raise ConfigError(f"stage {self.stage!r} runs on the target task: set 'target' (a dataset name or mapping)")
        return [self.target]  # type: ignore[list-item]

    def resolved_run_dir(self) -> Path:
        """``run_dir``, or ``<output_dir>/<stage>_<method>[_<target>_k<K>_s<seed>]``."""
        if self.run_dir:
            return Path(self.run_dir)
        name = f"{self.stage}_{self.method}" if self.stage != "zeroshot" else "zeroshot" + ("_ens" if self.zeroshot_ensemble else "")
        if self.stage not in SOURCE_STAGES:
            t = self.tasks()[0]
            name += f"_{slug(t.name)}" + (f"_k{t.shots}_s{t.seed}" if t.shots and self.stage != "zeroshot" else "") + (
                f"_{t.classes}" if t.classes != "all" else "")
        return Path(self.output_dir) / name

    def resolved_teacher_path(self) -> Path:
        return Path(self.teacher_path) if self.teacher_path else Path(self.output_dir) / f"teachers_{self.method}"

    def resolved_source_path(self) -> Path:
        return Path(self.source_path) if self.source_path else Path(self.output_dir) / f"source_{self.method}"


def slug(name: str) -> str:
    """A file-name-safe version of a task or method name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "task"


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``top`` wins; nested mappings merge key by key."""
    out = dict(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _resolve_relative(raw: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """Backbone files given relative to the config file (when they are not relative to the cwd)."""
    bb = raw.get("backbone")
    if isinstance(bb, dict):
        for key in ("model_config", "checkpoint"):
            v = bb.get(key)
            if isinstance(v, str) and not Path(v).is_absolute() and not Path(v).exists() and (config_dir / v).exists():
                bb[key] = str(config_dir / v)
    return raw


def load_run_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                    data: Mapping[str, Any] | None = None) -> CLIPRunConfig:
    """Load a YAML config (``base:`` files allowed) with ``key=value`` overrides, validated.
    Backbone files may be given relative to the config file. The overrides are remembered so
    that :func:`config_for_stage` re-applies them last."""
    raw: dict[str, Any] = dict(data or {})
    if path is not None:
        raw = _resolve_relative(merge(raw, read_yaml(path)), Path(path).parent)
    try:
        cfg = load_config(CLIPRunConfig, None, list(overrides), data=raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None
    cfg.overrides = list(cfg.overrides) + [o for o in overrides if not o.startswith("overrides=")]
    return cfg


def config_for_stage(cfg: CLIPRunConfig, stage: str, extra: Mapping[str, Any] | None = None) -> CLIPRunConfig:
    """The config of one stage run: top level ← ``stages.<stage>`` ← ``extra`` ← command-line overrides."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    raw = to_dict(cfg)
    raw = merge(raw, cfg.stages.get(stage, {}))
    raw = merge(raw, dict(extra or {}))
    raw["stage"] = stage
    raw = apply_overrides(raw, [o for o in cfg.overrides if not o.startswith("stage=")], CLIPRunConfig)
    return from_dict(CLIPRunConfig, raw)


def config_from_run(run_config: Mapping[str, Any], where: str = "run") -> CLIPRunConfig:
    """A saved run's ``config.json`` back into a :class:`CLIPRunConfig`."""
    try:
        return from_dict(CLIPRunConfig, dict(run_config))
    except ConfigError as e:
        raise ConfigError(f"{where}: its config.json is not a CLIP run config ({e})") from None
