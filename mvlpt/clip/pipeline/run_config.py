"""The run configuration of the CLIP pipeline: one YAML file describes a whole experiment.

A config names the backbone, the prompt method and its shapes, the source tasks and the
target task, the training loop, and (optionally) per-stage sections and a few-shot sweep.
Each command (``mvlpt teachers|source|adapt|zeroshot|fewshot``) picks its stage from it:
:func:`config_for_stage` merges the stage's section (``stages.<stage>``) over the top level,
and the run's prompt method's section (``methods.<method>``, with its own ``stages.<stage>``), then
the run's own settings (a sweep cell's target, seed, epochs), then re-applies the command-line
``key=value`` overrides, so those always win.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, get_args

from mvlpt.clip.backbone import BackboneConfig
from mvlpt.clip.prompt_config import CLIPPromptConfig
from mvlpt.clip.prompts import prompt_method
from mvlpt.core.config import ConfigError, apply_overrides, deep_merge, from_dict, load_config, read_yaml, to_dict
from mvlpt.core.sampling import check_if_too_few
from mvlpt.core.stages import SOURCE_STAGES, Stage as TrainedStage
from mvlpt.core.train_config import TrainConfig

#: the core's trained stages (:data:`mvlpt.core.stages.TRAINED_STAGES`) and the zero-shot baseline;
#: ``SOURCE_STAGES`` (whose tasks are the source tasks) is the core's too
Stage = Literal[TrainedStage, "zeroshot"]
STAGES: tuple[str, ...] = get_args(Stage)
#: multitask source recipes (``source_mode``): MPT (decomposed prompts per task id, distilled from
#: teachers, per-task softmax) or the official MVLPT (one shared vanilla prompt, no teachers,
#: softmax over the union of all source classes; the target fine-tunes a vanilla prompt from it)
SOURCE_MODES = ("mpt", "mvlpt")


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


VAL_SOURCES = ("auto", "split", "holdout")


@dataclass
class DataConfig:
    """Where the data lives, how training images are augmented and where the validation set comes from.

    Model selection: when a trained stage evaluates during training (``train.eval_every > 0``,
    or ``val_source`` set to ``split`` / ``holdout``), the periodic evaluations run on a
    *validation* set, the best checkpoint (``train.select_metric``) is chosen on it and that
    checkpoint is then evaluated on ``eval_split`` (``test``), which is what the run reports.
    Test images are never used for selection. Without evaluation during training, the last
    step is evaluated on ``eval_split`` and no validation set is built.

    Attributes:
        root: data root for registry datasets (``null`` → ``$MVLPT_DATA``, then ``./data``).
        train_augment: CoOp's random resized crop (+ flip) on training images.
        hflip: default of the tasks' ``hflip``.
        crop_scale: scale range of the random resized crop.
        val_source: where each task's validation set comes from:
            ``split`` = the task's own ``val`` split (CoOp split files, image folders / HF data
            with a ``val`` split); in a few-shot run (``shots`` = K) CoOp's ``min(K, 4)`` examples
            per class of it, seeded by the task's ``seed``. An error when the task has none.
            ``holdout`` = a seeded hold-out of the training split, removed from training: full-data
            runs hold out ``val_fraction`` of the training rows (at least 1, at most ``val_max`` and
            ``max_eval`` when those are > 0; seeded by the task's name and ``seed``); few-shot runs
            hold out ``min(K, 4)`` examples per class of the train pool that were not drawn as
            shots (the few-shot manifest's ``val`` rows). ``auto`` = ``split`` when the task has a
            ``val`` split, else ``holdout``.
        val_fraction: share of the training rows held out (``holdout``, full-data runs), in (0, 1).
        val_max: cap on each task's validation examples (a seeded subset; 0 = no cap); the task's
            ``max_eval`` caps them too.
        val_k: validation examples per class of a few-shot run, in either mode (``null`` = CoOp's
            ``min(K, 4)``); more give a steadier validation figure, e.g. to compare source groups
            on the target's val split (``eval_split: val``). The K shots themselves do not change.
        if_too_few: a few-shot K larger than a classification task's smallest class: ``error``
            (naming the task and that class), or ``largest`` = train with the largest K every class
            has; that K is shown in the tables and the run directory (``k24of32_s1``).
    """

    root: str | None = None
    train_augment: bool = True
    hflip: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)
    val_source: Literal["auto", "split", "holdout"] = "auto"
    val_fraction: float = 0.1
    val_max: int = 0
    val_k: int | None = None
    if_too_few: Literal["error", "largest"] = "error"

    def few_shot_val_k(self, shots: int) -> int:
        """Validation examples per class of a ``shots``-shot run (``val_k``, else ``min(shots, 4)``)."""
        return min(shots, 4) if self.val_k is None else self.val_k

    def validate(self) -> None:
        check_if_too_few(self.if_too_few, "data.if_too_few", allowed=("error", "largest"))
        if self.val_source not in VAL_SOURCES:
            raise ConfigError(f"data.val_source must be one of {', '.join(VAL_SOURCES)}, found {self.val_source!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1) (share of the training split held out for "
                              f"validation), found {self.val_fraction}")
        if self.val_max < 0:
            raise ConfigError(f"data.val_max must be >= 0 (0 = no cap), found {self.val_max}")
        if self.val_k is not None and (isinstance(self.val_k, bool) or not isinstance(self.val_k, int) or self.val_k < 1):
            raise ConfigError(f"data.val_k must be a whole number >= 1 (validation examples per class of a "
                              f"few-shot run) or null (CoOp's min(K, 4)), found {self.val_k!r}")


@dataclass
class MethodSpec:
    """One line of a few-shot sweep.

    Attributes:
        name: label in the table and the plot (``ZS-CLIP``, ``CoOp``, ``MCoOp``, ...).
        stage: ``zeroshot`` (hand templates), ``single`` (prompt from scratch on the target) or
            ``target`` (multitask: initialised from the source run of the same prompt method).
        method: prompt method ``coop`` | ``vpt`` | ``upt`` (``null`` = the config's ``prompt.method``).
        ensemble: zero-shot with the template ensemble instead of the single template.
        source_mode: for ``target`` lines, which source recipe the line transfers from: ``mpt``
            (decomposed, distilled) or ``mvlpt`` (one shared vanilla prompt; the target fine-tunes
            a vanilla prompt from it); ``null`` = the config's ``source_mode``. E.g.
            ``{name: MCoOp (MVLPT), stage: target, method: coop, source_mode: mvlpt}``.
        overrides: config mapping merged over this method's runs (e.g. ``{train: {max_steps: 50}}``).
        baseline: the sweep method this line is compared with in the paired-difference table of
            ``results.md`` (same K and seed). ``null``: a ``target`` line is compared with the first
            ``single`` line of the same prompt method, other lines with none. Must name another
            trained (non-zero-shot) line of the sweep.
    """

    name: str
    stage: Literal["zeroshot", "single", "target"] = "single"
    method: str | None = None  # a registered prompt method (mvlpt.clip.prompts.PROMPT_METHODS)
    ensemble: bool = False
    source_mode: Literal["mpt", "mvlpt"] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None

    def validate(self) -> None:
        if self.method is not None:
            prompt_method(self.method, f"sweep.methods: {self.name!r}: method")
        if self.baseline is not None and self.stage == "zeroshot":
            raise ConfigError(f"sweep.methods: {self.name!r}: a zero-shot line has no K / seed to pair with its "
                              f"baseline {self.baseline!r}; put 'baseline' on a trained line")
        if self.source_mode is not None and self.source_mode not in SOURCE_MODES:
            raise ConfigError(f"sweep.methods: {self.name!r}: source_mode must be one of {', '.join(SOURCE_MODES)} "
                              f"(or null), found {self.source_mode!r}")
        if self.source_mode is not None and self.stage != "target":
            raise ConfigError(f"sweep.methods: {self.name!r}: source_mode applies to multitask lines "
                              f"(stage: target) only, this line has stage: {self.stage}")


def _k_keys(mapping: Mapping[Any, Any], where: str) -> dict[int, Any]:
    """A mapping keyed by K with int keys (``"4"`` from JSON → ``4``)."""
    out: dict[int, Any] = {}
    for k, v in mapping.items():
        if isinstance(k, bool) or not (isinstance(k, int) or (isinstance(k, str) and k.strip().isdigit())):
            raise ConfigError(f"{where}: keys are shot counts K (ints), found {k!r}")
        out[int(k)] = v
    return out


@dataclass
class SweepConfig:
    """Methods × shots × seeds of ``mvlpt fewshot`` on the target task.

    Attributes:
        methods: the lines of the table / plot.
        shots: K values.
        seeds: few-shot sampling and training seeds.
        seeds_at: seeds per K overriding ``seeds`` for that K (e.g. ``{1: [1, 2, 3, 4, 5]}``: more
            seeds where the variance is largest); every key must be one of ``shots``.
        epochs_by_shots: ``train_epochs`` per K (e.g. CoOp's ``{1: 50, 2: 100, 4: 100, 8: 200, 16: 200}``);
            K values not listed use the config's ``train_epochs`` / ``train.max_steps``.
        base_to_new: train on the target's base classes; report base, new and their harmonic mean.
        out_dir: results folder (``null`` → ``<output_dir>/fewshot_<target>``).
    """

    methods: list[MethodSpec] = field(default_factory=lambda: [
        MethodSpec("ZS-CLIP", "zeroshot"), MethodSpec("CoOp", "single", "coop"), MethodSpec("MCoOp", "target", "coop")])
    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    # keys typed ``int | str``: a run's config.json (JSON) gives the K keys back as strings;
    # ``__post_init__`` turns them into ints
    seeds_at: dict[int | str, list[int]] = field(default_factory=dict)
    epochs_by_shots: dict[int | str, float] = field(default_factory=dict)
    base_to_new: bool = False
    out_dir: str | None = None

    def __post_init__(self) -> None:
        self.seeds_at = _k_keys(self.seeds_at, "sweep.seeds_at")
        self.epochs_by_shots = _k_keys(self.epochs_by_shots, "sweep.epochs_by_shots")

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
        for k, seeds in self.seeds_at.items():
            if k not in self.shots:
                raise ConfigError(f"sweep.seeds_at: K={k} is not one of sweep.shots {self.shots}")
            if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
                raise ConfigError(f"sweep.seeds_at.{k} must be a nonempty list of int seeds, found {seeds!r}")
            if len(set(seeds)) != len(seeds):
                raise ConfigError(f"sweep.seeds_at.{k}: duplicate seeds in {seeds}")
        by_name = {m.name: m for m in self.methods}
        for m in self.methods:
            if m.baseline is None:
                continue
            b = by_name.get(m.baseline)
            if b is None:
                raise ConfigError(f"sweep.methods: {m.name!r}: baseline {m.baseline!r} is not a sweep method; "
                                  f"the methods are {names}")
            if b is m:
                raise ConfigError(f"sweep.methods: {m.name!r}: a method cannot be its own baseline")
            if b.stage == "zeroshot":
                raise ConfigError(f"sweep.methods: {m.name!r}: baseline {b.name!r} is zero-shot (one run, no K / "
                                  "seed to pair with); name a trained line")

    def seeds_for(self, shots: int) -> list[int]:
        """The seeds of K = ``shots``: ``seeds_at[shots]`` or ``seeds``."""
        return list(self.seeds_at.get(shots, self.seeds))

    def pairs(self, default_method: str | None = None) -> list[tuple[str, str]]:
        """``(treatment, baseline)`` method names of the paired-difference table: each line's explicit
        ``baseline``, else for a ``target`` line the first ``single`` line with the same prompt method
        (``method`` null = ``default_method``, the config's ``prompt.method``)."""
        out = []
        for m in self.methods:
            if m.baseline is not None:
                out.append((m.name, m.baseline))
            elif m.stage == "target":
                method = m.method or default_method
                b = next((s for s in self.methods if s.stage == "single" and (s.method or default_method) == method), None)
                if b is not None:
                    out.append((m.name, b.name))
        return out


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
        teacher_path: teacher run of the source stage (``null`` → ``<output_dir>/teachers_<method>``;
            not used with ``source_mode: mvlpt``).
        source_path: source run of the target stage (``null`` → ``<output_dir>/source_<method>``, or
            ``<output_dir>/source_<method>_mvlpt`` with ``source_mode: mvlpt``).
        source_mode: the multitask recipe of the source and target stages. ``mpt`` (default): MPT's
            decomposed prompts ``P* ⊙ U_k V_kᵀ`` per source task, distilled from the teachers, each
            sample scored against its own task's classes; the target starts from ``P*`` + the mean
            factors. ``mvlpt``: the official MVLPT recipe: one vanilla prompt per prompt module
            shared by all sources (no task ids, no teachers), a softmax over the union of all
            classification sources' classes (the class lists concatenated; a class in two datasets is
            two entries; VQA sources keep their own answer candidates), best checkpoint on validation
            as usual; the target is a
            vanilla prompt initialised from that shared prompt and fully fine-tuned. Source and
            target runs get a ``_mvlpt`` suffix (``source_<method>_mvlpt``) so that both recipes
            can live in one ``output_dir``. MVLPT warms up for one epoch
            (``train.schedule.warmup_steps``).
        eval_split: the split every run *reports* (``test``, or ``val``). With evaluation during
            training on (see :class:`DataConfig`), the best checkpoint is selected on the validation
            set and evaluated on this split; without it, the last step is evaluated on it.
            ``val`` reports the validation set itself (the one selection uses).
        train_epochs: when > 0, ``train.max_steps`` counts epochs as Dassl/CoOp's train loader does,
            for ``n`` = the stage's training examples over all its tasks: the batch is
            ``min(n, train.batch_size)`` (``train.batch_size`` is set to ``n`` when ``n`` is smaller;
            ``train.eval_batch_size`` 0 keeps the configured size) and an epoch is
            ``max(1, ⌊n / batch⌋)`` batches (``drop_last``), so ``max_steps`` =
            ⌈epochs × max(1, ⌊n / batch⌋) / grad_accum_steps⌉. E.g. 10 examples, batch 32, 50 epochs
            → 50 steps of batch 10; 100 examples, batch 32, 2 epochs → 6 steps. Handy in few-shot
            sweeps where the data size changes with K.
        zeroshot_ensemble: zero-shot stage uses each task's template ensemble.
        threads: torch CPU threads (0 = torch's default). Tiny models on a shared or small CPU
            often run faster on 1 thread than on several.
        workers: processes that run an experiment's or sweep's independent stage runs side by side
            (source chains, sweep cells; a cell waits for its source), each with ``threads`` torch
            threads; 1 = one after another in this process. The results do not depend on it (each
            run has its own seed and directory); with ``workers × threads`` at most the CPU cores,
            a sweep on a multi-core CPU finishes up to ``workers`` times sooner.
        stages: per-stage config sections merged over the top level (``{teachers: {train: {...}}}``).
        methods: per-prompt-method sections merged over the stage section for every run of that
            method (``{coop: {train: {optim: {name: adamw}}}}``), so that one experiment can give each
            method its own schedule (CoOp's text-only steps reuse cached image features and cost little;
            VPT's and UPT's run the image tower every step). A method section may hold its own
            ``stages.<stage>`` (applied over it) and ``sweep.epochs_by_shots`` (used for that method's
            cells instead of the sweep's).
        sweep: the few-shot sweep of ``mvlpt fewshot``.
        overrides: command-line ``key=value`` overrides, re-applied over every stage section.
        resolved_tasks: written by the runner: each task's name, type, class names and templates
            (what ``predict`` needs without the data).
        fresh: delete the run directory's previous contents and train from scratch (``--fresh``).
            Without it a run directory holding a run of another config is refused (naming the keys
            that differ) and one of the same config resumes, or returns its result when finished.
            Not part of the config fingerprint (:mod:`mvlpt.core.run_dir`).
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
    source_mode: Literal["mpt", "mvlpt"] = "mpt"
    eval_split: Literal["test", "val"] = "test"
    train_epochs: float = 0.0
    zeroshot_ensemble: bool = False
    threads: int = 0
    workers: int = 1
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    overrides: list[str] = field(default_factory=list)
    resolved_tasks: list[dict[str, Any]] = field(default_factory=list)
    fresh: bool = False

    def __post_init__(self) -> None:
        self.sources = [as_task(t) for t in self.sources]
        self.target = as_task(self.target) if self.target is not None else None

    def validate(self) -> None:
        check_stage_sections(self.stages, "stages")
        if self.train_epochs < 0:
            raise ConfigError(f"train_epochs must be >= 0, found {self.train_epochs}")
        for name, section in self.methods.items():
            check_method_section(name, section)
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = torch's default), found {self.threads}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1 (1 = runs one after another in this process), found {self.workers}")
        if self.source_mode not in SOURCE_MODES:
            raise ConfigError(f"source_mode must be one of {', '.join(SOURCE_MODES)}, found {self.source_mode!r}")

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
        name += self._mode_suffix() if self.stage in ("source", "target") else ""
        if self.stage not in SOURCE_STAGES:
            t = self.tasks()[0]
            name += f"_{slug(t.name)}" + (f"_k{t.shots}_s{t.seed}" if t.shots and self.stage != "zeroshot" else "") + (
                f"_{t.classes}" if t.classes != "all" else "")
        return Path(self.output_dir) / name

    def _mode_suffix(self) -> str:
        return "_mvlpt" if self.source_mode == "mvlpt" else ""

    def resolved_teacher_path(self) -> Path:
        """The teacher run of an MPT source stage (``source_mode: mvlpt`` uses none)."""
        return Path(self.teacher_path) if self.teacher_path else Path(self.output_dir) / f"teachers_{self.method}"

    def resolved_source_path(self) -> Path:
        """``source_path``, or ``<output_dir>/source_<method>`` (``..._mvlpt`` with ``source_mode: mvlpt``)."""
        if self.source_path:
            return Path(self.source_path)
        return Path(self.output_dir) / f"source_{self.method}{self._mode_suffix()}"


def slug(name: str) -> str:
    """A file-name-safe version of a task or method name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "task"


#: recursive dict merge, ``top`` wins (the core's :func:`~mvlpt.core.config.deep_merge`)
merge = deep_merge


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
    if path is not None:  # a config file naming no backbone must not download the default silently
        from .backbone_check import check_named_backbone

        check_named_backbone(raw, overrides, cfg.backbone, str(path))
    return cfg


def check_stage_sections(stages: Any, where: str) -> None:
    """Raise :class:`ConfigError` unless ``stages`` maps stage names (:data:`STAGES`) to sections."""
    if not isinstance(stages, Mapping):
        raise ConfigError(f"{where} must be a mapping of stage sections, found {type(stages).__name__}")
    bad = sorted(set(stages) - set(STAGES))
    if bad:
        raise ConfigError(f"{where}: unknown stage section(s) {bad}; valid: {', '.join(STAGES)}")


def check_method_section(name: str, section: Any) -> None:
    """Raise :class:`ConfigError` naming the bad key of a ``methods.<name>`` section."""
    where = f"methods.{name}"
    prompt_method(name, f"methods: {name!r}")
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping of config keys, found {type(section).__name__}")
    bad = sorted(set(section) & {"methods", "stage", "sources", "target", "output_dir", "run_dir"})
    if isinstance(section.get("prompt"), Mapping) and "method" in section["prompt"]:
        bad.insert(0, "prompt.method")
    if bad:
        raise ConfigError(f"{where}: {bad[0]!r} cannot be set per method (a method section holds the "
                          "settings of that method's runs: train, data, prompt shapes, train_epochs, stages)")
    check_stage_sections(section.get("stages", {}), f"{where}.stages")
    sweep = section.get("sweep", {})
    if not isinstance(sweep, Mapping) or set(sweep) - {"epochs_by_shots"}:
        raise ConfigError(f"{where}.sweep: only epochs_by_shots can be set per method, found "
                          f"{sorted(set(sweep) - {'epochs_by_shots'})}")
    _k_keys(dict(sweep.get("epochs_by_shots", {})), f"{where}.sweep.epochs_by_shots")


def method_section(cfg: CLIPRunConfig, method: str, stage: str) -> dict[str, Any]:
    """``methods.<method>`` with its own ``stages.<stage>`` merged in (its ``stages``/``sweep`` keys removed)."""
    section = dict(cfg.methods.get(method, {}))
    own = section.pop("stages", {}).get(stage, {})
    section.pop("sweep", None)
    return merge(section, own)


def method_epochs_by_shots(cfg: CLIPRunConfig, method: str) -> dict[int, float]:
    """The few-shot epochs per K of ``method``'s cells: its section's ``sweep.epochs_by_shots``, else the sweep's."""
    own = cfg.methods.get(method, {}).get("sweep", {}).get("epochs_by_shots")
    return _k_keys(dict(own), f"methods.{method}.sweep.epochs_by_shots") if own else cfg.sweep.epochs_by_shots


def config_for_stage(cfg: CLIPRunConfig, stage: str, extra: Mapping[str, Any] | None = None) -> CLIPRunConfig:
    """The config of one stage run: top level ← ``stages.<stage>`` ← ``methods.<method>`` (← its
    ``stages.<stage>``) ← ``extra`` ← command-line overrides; ``<method>`` is the run's prompt method.
    The stage and method sections are applied here and left out of the result (``stages: {}``,
    ``methods: {}``), so resolving a stage config again changes nothing they set."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    overrides = [o for o in cfg.overrides if not o.startswith("stage=")]
    raw = merge(to_dict(cfg), cfg.stages.get(stage, {}))
    if cfg.methods:
        probe = apply_overrides(merge(raw, dict(extra or {})), overrides, CLIPRunConfig)
        raw = merge(raw, method_section(cfg, str(probe.get("prompt", {}).get("method", cfg.method)), stage))
    raw = merge(raw, dict(extra or {}))
    raw["stage"] = stage
    raw["stages"], raw["methods"] = {}, {}
    raw = apply_overrides(raw, overrides, CLIPRunConfig)
    return from_dict(CLIPRunConfig, raw)


def config_from_run(run_config: Mapping[str, Any], where: str = "run") -> CLIPRunConfig:
    """A saved run's ``config.json`` back into a :class:`CLIPRunConfig`."""
    try:
        return from_dict(CLIPRunConfig, dict(run_config))
    except ConfigError as e:
        raise ConfigError(f"{where}: its config.json is not a CLIP run config ({e})") from None
