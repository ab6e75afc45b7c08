"""Run configuration of the text MPT stages (YAML under ``configs/text/`` → these dataclasses).

Model selection (:class:`SelectionConfig`, key ``selection``) decides which data picks the best
checkpoint (``val``) and which data is reported (``test``); by default (``mode: auto``) the two
never overlap (the Compacter → ATTEMPT → DePT convention, see :class:`SelectionConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from mvlpt.core.config import apply_overrides, deep_merge, from_dict_in, read_yaml
from mvlpt.core.errors import ConfigError
from mvlpt.core.sampling import check_if_too_few
from mvlpt.core.stages import MPTStage, PromptConfig
from mvlpt.core.train_config import TrainConfig

from .tasks import BUILTIN, METRICS, canonical_name

#: the stages this head trains: MPT's three (the core's vocabulary, :mod:`mvlpt.core.stages`)
Stage = MPTStage


@dataclass
class TinyT5Config:
    """A small random T5 built from a ``T5Config`` (tests and offline demos; ``backbone.name: tiny``)."""

    d_model: int = 32
    d_ff: int = 64
    num_layers: int = 2
    num_heads: int = 2
    d_kv: int = 16
    seed: int = 0


@dataclass
class BackboneConfig:
    """The frozen T5.

    A run records which backbone it was trained on (``meta.backbone`` of its ``config.json``: name,
    tokenizer, fingerprints of the weights and the vocabulary); ``eval``, ``predict`` and the stages
    that read a teachers / source run use that backbone and refuse a config naming another one.

    Attributes:
        name: hub name (``t5-base``, ``google/t5-v1_1-base``, ``google/flan-t5-base``), a local
            directory saved with ``save_pretrained``, ``tiny-t5`` (the pretrained miniature shipped in
            ``text_mpt/weights/tiny-t5``, with its SentencePiece tokenizer) or ``tiny`` (random T5 from
            :class:`TinyT5Config`). Unset (``null``): the backbone of the run being read (``eval``, a
            source/teachers run), else ``t5-base``.
        tokenizer: tokenizer name/dir (default: the model's own, saved with it); ``byt5`` builds
            ``ByT5Tokenizer()`` (no files; the default of ``tiny``).
        dropout: keep the backbone's dropout active while training (default: eval-mode backbone).
        max_input_length: input tokens after the prompt; longer inputs are truncated (counted warning).
        max_target_length: answer tokens; longer verbalizers are truncated (counted warning).
    """

    name: str | None = None
    tokenizer: str | None = None
    tiny: TinyT5Config = field(default_factory=TinyT5Config)
    dropout: bool = False
    max_input_length: int = 256
    max_target_length: int = 16

    def validate(self) -> None:
        if self.max_input_length < 2 or self.max_target_length < 2:
            raise ConfigError("backbone.max_input_length and backbone.max_target_length must be >= 2")


@dataclass
class TaskConfig:
    """One task and where its data comes from.

    Data source, first match wins: ``data_files`` ({split: file}), ``path`` (a folder with
    ``<split>.jsonl|json|csv|tsv|parquet``), ``<data_root>/<task folder>`` when the run sets
    ``data_root``, else the Hugging Face hub (``hub_name``/``hub_config``, default per task).

    A *custom* task sets ``template`` (``{field}`` placeholders), ``labels`` and optionally
    ``verbalizers``, ``label_field`` and ``metrics`` (default ``[accuracy]``).

    Caps (0 = no cap; seeded subsamples): ``max_train_examples`` caps the training part (after the
    ``val`` hold-out of the large rule, before ``few_shot_k``; seed ``train.seed``);
    ``max_eval_examples`` caps the ``val`` part and the ``test`` part *each*, after the split
    (seed ``selection.seed``). Neither changes which selection rule a task gets: the rule counts
    the rows the train split originally has.
    """

    name: str
    path: str | None = None
    data_files: dict[str, str] = field(default_factory=dict)
    hub_name: str | None = None
    hub_config: str | None = None
    train_split: str | None = None
    eval_split: str | None = None
    max_train_examples: int = 0
    max_eval_examples: int = 0
    template: str | None = None
    labels: list[str] = field(default_factory=list)
    verbalizers: list[str] = field(default_factory=list)
    label_field: str = "label"
    metrics: list[str] = field(default_factory=list)

    @property
    def is_custom(self) -> bool:
        return self.template is not None

    def validate(self) -> None:
        if self.max_train_examples < 0 or self.max_eval_examples < 0:
            raise ConfigError(f"task {self.name!r}: max_train_examples / max_eval_examples must be >= 0")
        if not self.is_custom:
            if canonical_name(self.name) not in BUILTIN:
                from .tasks import get_task

                get_task(self.name)  # raises with the list of tasks
            custom_only = [k for k, v in [("labels", self.labels), ("verbalizers", self.verbalizers),
                                          ("metrics", self.metrics), ("label_field", self.label_field != "label")] if v]
            if custom_only:
                raise ConfigError(f"task {self.name!r} is built in: {', '.join(custom_only)} are only for custom tasks "
                                  "(tasks[].template set)")
        elif not self.labels:
            raise ConfigError(f"custom task {self.name!r} needs tasks[].labels")
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ConfigError(f"task {self.name!r}: unknown metrics {bad}; choose from {list(METRICS)}")


@dataclass
class EvalConfig:
    """Evaluation.

    Attributes:
        mode: ``rank`` (score every verbalizer), ``generate`` (greedy decoding, parsed to a
            verbalizer; unparsable = wrong) or ``both`` (rank metrics + ``gen_*`` metrics).
        max_new_tokens: generation length.
        scoring: a candidate's score is the ``sum`` or the ``mean`` of its token log-probabilities.
    """

    mode: Literal["rank", "generate", "both"] = "rank"
    max_new_tokens: int = 8
    scoring: Literal["sum", "mean"] = "sum"


@dataclass
class SelectionConfig:
    """Model selection: which data picks the best checkpoint and which data is reported.

    GLUE/SuperGLUE test labels are hidden, so (following Compacter, ATTEMPT and DePT) ``mode: auto``
    builds a labelled test part that model selection never sees, per task:

    * **small rule** — the train split has fewer than ``small_threshold`` rows: the eval split
      (GLUE ``dev`` / SuperGLUE ``val``) is shuffled with ``seed`` and halved into ``val``
      (periodic evaluation, best checkpoint) and ``test`` (reported); training uses the full train split.
    * **large rule** — otherwise: ``val_size`` train rows (drawn with ``seed``) are held out as
      ``val`` and removed from training; ``test`` is the full eval split.

    Rows are the split unit (a row expanding to several examples, e.g. a MultiRC passage, stays in one part).
    After training, the best checkpoint's prompts are evaluated on ``test``; with no evaluation
    on ``val`` the last step is reported.

    Attributes:
        mode: ``auto`` (the rules above, default); ``dev`` — **legacy, optimistic**: select *and*
            report on the full eval split (the results say so; not comparable with papers);
            ``none`` — no model selection: train on the full train split, report the last step on
            the full eval split.
        small_threshold: train rows (as the split originally has them, before ``max_train_examples``
            and ``few_shot_k``) below which a task takes the small rule.
        val_size: train rows held out as ``val`` by the large rule.
        seed: seeds the split and the ``max_eval_examples`` subsamples; independent of ``train.seed``,
            so runs with different training seeds are reported on the same ``test`` part.
        eval_part: what ``text-mpt eval`` scores: ``test`` (default: the reported part, same seeded
            split as training), ``val``, or ``dev`` (the full eval split).
    """

    mode: Literal["auto", "dev", "none"] = "auto"
    small_threshold: int = 10000
    val_size: int = 1000
    seed: int = 0
    eval_part: Literal["test", "val", "dev"] = "test"

    def validate(self) -> None:
        if self.small_threshold < 0:
            raise ConfigError(f"selection.small_threshold must be >= 0 (train rows), found {self.small_threshold}")
        if self.val_size < 1:
            raise ConfigError(f"selection.val_size must be >= 1 (train rows held out as val), found {self.val_size}")
        if self.mode == "none" and self.eval_part == "val":
            raise ConfigError("selection.eval_part=val needs a val part, but selection.mode=none has none; "
                              "use eval_part=test or dev, or selection.mode=auto")


@dataclass
class TextRunConfig:
    """One stage of text MPT.

    Attributes:
        stage: ``teachers`` | ``source`` | ``target`` (the ``adapt`` command).
        run_dir: this run's directory (``config.json``, ``checkpoints/``, ``metrics.jsonl``,
            ``results.md`` / ``.csv``): the key and meaning of the CLIP head's ``run_dir``. Required (as
            ``run_dir`` or ``output_dir``); the text head derives no run directory.
        output_dir: the text head's old name of ``run_dir`` (an alias: the same directory, kept for existing
            configs and runs; both are saved in ``config.json``). Unlike the CLIP head's ``output_dir`` (the
            parent folder of the runs) it names this run's directory itself. A config level giving both
            with different values is refused; a later level (a ``base:`` file's child, ``key=value``) wins.
        data_root: folder holding ``glue/<TASK>`` and ``superglue/<TASK>``; unset (``null``):
            ``$MVLPT_DATA`` when set, else the Hugging Face hub; ``""``: ``$MVLPT_DATA``, else the
            shared data beside the checkout (``../shared/data``). ``data.root`` (the CLIP head's and the
            pretraining recipes' spelling) is accepted for it, in YAML and as ``data.root=...``.
        teacher_path: teachers run (source stage) whose vanilla prompts give the distillation targets.
        few_shot_k: train on ``k`` examples per class (0 = all), drawn with ``few_shot_seed`` from the
            training part (after the ``val`` hold-out).
        few_shot_if_too_few: a label with fewer than ``few_shot_k`` training examples: ``error`` (before
            training, naming the label and its count), ``all`` (it gives all it has, Dassl's and CoOp's
            rule; SuperGLUE's 32-shot CB has 3 'maybe' rows) or ``largest`` (``k`` lowered to that count
            for every label). The short labels are recorded in ``splits.json`` (``few_shot_short``).
        selection: which data selects the best checkpoint (``val``) and which is reported (``test``);
            see :class:`SelectionConfig` (default ``mode: auto``).
        checkpoint: run/checkpoint evaluated by ``text-mpt eval`` (default: ``run_dir``).
        fresh: delete ``run_dir``'s previous contents and train from scratch (``--fresh``); without it
            a directory holding a run of another config is refused (see :mod:`mvlpt.core.run_dir`).
    """

    stage: Stage
    tasks: list[TaskConfig]
    run_dir: str | None = None
    output_dir: str | None = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    data_root: str | None = None
    teacher_path: str | None = None
    few_shot_k: int = 0
    few_shot_seed: int = 0
    few_shot_if_too_few: str = "error"
    checkpoint: str | None = None
    fresh: bool = False

    def __post_init__(self) -> None:
        # one directory under two names (``output_dir``: the text head's old name), kept equal
        if self.run_dir is None:
            self.run_dir = self.output_dir
        elif self.output_dir is None:
            self.output_dir = self.run_dir
        elif self.run_dir != self.output_dir:
            raise ConfigError(f"run_dir={self.run_dir!r} and output_dir={self.output_dir!r}: both name this run's "
                              "directory (output_dir is the text head's old name of run_dir); give one")

    def validate(self) -> None:
        if not self.run_dir:
            raise ConfigError("missing required config key 'run_dir' (this run's directory; the old name "
                              "'output_dir' is accepted too)")
        if not self.tasks:
            raise ConfigError("tasks: give at least one task")
        names = [canonical_name(t.name) for t in self.tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"tasks: duplicate task names {dup}")
        if self.few_shot_k < 0:
            raise ConfigError(f"few_shot_k must be >= 0, found {self.few_shot_k}")
        check_if_too_few(self.few_shot_if_too_few, "few_shot_if_too_few")
        d = self.train.distill
        if self.stage == "source" and not self.teacher_path and (d.kl_weight > 0 or d.mse_weight > 0):
            raise ConfigError("the source stage distils from the teachers run: set teacher_path "
                              "(or train.distill.kl_weight=0 train.distill.mse_weight=0 to train without teachers)")
        if self.stage != "source" and self.teacher_path:
            raise ConfigError(f"teacher_path is only used by the source stage, not by stage {self.stage!r}")

    @property
    def task_names(self) -> list[str]:
        return [canonical_name(t.name) if not t.is_custom else t.name for t in self.tasks]


#: alias → canonical key of a text run config (the spellings the CLIP head uses, and the old ones)
ALIASES = {"output_dir": "run_dir", "data.root": "data_root"}


def canonical_keys(raw: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """One config level (a YAML file without its ``base:``, the ``data`` mapping) with the aliases of
    :data:`ALIASES` renamed to their canonical keys: ``output_dir`` → ``run_dir``, ``data: {root: ...}`` →
    ``data_root``. The text head's ``data`` section holds only ``root``; one level giving an alias and its
    key with different values is a :class:`ConfigError`."""
    out = dict(raw)
    at = f"{where}: " if where else ""
    data = out.pop("data", None)
    if data is not None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{at}data: expected a mapping such as {{root: ../shared/data}}, found {data!r}")
        extra = sorted(set(data) - {"root"})
        if extra:
            raise ConfigError(f"{at}unknown config key(s) {['data.' + str(k) for k in extra]}: the text head's data "
                              "section holds only 'root' (= data_root)")
        if "root" in data:
            out["data.root"] = data["root"]
    for alias, key in ALIASES.items():
        if alias not in out:
            continue
        value = out.pop(alias)
        if key in out and out[key] != value:
            raise ConfigError(f"{at}{alias}={value!r} and {key}={out[key]!r}: {alias} is another spelling of {key}; "
                              "give one")
        out[key] = value
    return out


def _read_levels(path: Path) -> dict[str, Any]:
    """:func:`~mvlpt.core.config.read_yaml` with :func:`canonical_keys` applied to every file before the
    ``base:`` chain is merged, so that a child's ``output_dir`` wins over its base's ``run_dir`` (and back)."""
    read_yaml(path)  # checks the whole chain, with the core's error messages
    own = yaml.safe_load(path.read_text(encoding="utf-8"))
    base = own.pop("base", None)
    lower = _read_levels(path.parent / base) if base else {}
    return deep_merge(lower, canonical_keys(own, str(path)))


def canonical_override(item: str) -> str:
    """``output_dir=X`` → ``run_dir=X``, ``data.root=X`` → ``data_root=X``; any other override as given."""
    key, sep, value = item.partition("=")
    return f"{ALIASES[key.strip()]}={value}" if sep and key.strip() in ALIASES else item


def load_run_config(path: str | Path | None, overrides: Sequence[str] = (), data: dict | None = None) -> TextRunConfig:
    """YAML (+ ``key=value`` overrides) → validated :class:`TextRunConfig`.

    ``data`` (lowest) ← the file (its ``base:`` chain) ← ``overrides``; each level may use the aliases of
    :data:`ALIASES` (``output_dir`` for ``run_dir``, ``data.root`` for ``data_root``)."""
    raw = canonical_keys(data or {})
    if path is not None:
        raw = deep_merge(raw, _read_levels(Path(path)))
    raw = apply_overrides(raw, [canonical_override(o) for o in overrides], TextRunConfig)
    return from_dict_in(TextRunConfig, raw, path)
