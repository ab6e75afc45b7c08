"""One Python call to a prompted CLIP, in the spirit of ``open_clip.create_model_and_transforms`` and
PEFT's ``get_peft_model`` / ``PeftModel.from_pretrained``:

    >>> pm = create_prompted_model("configs/clip/quickstart.yaml", stage="single")   # fresh prompts, data loaded
    >>> pm.trainer().fit()                                                            # the core Trainer
    >>> pm.predict(["a.png"], tasks="digits")
    >>> pm = create_prompted_model(run="runs/quickstart/source_coop")                 # a saved run's prompts

Nothing here is new logic: a config goes through the stage runner's own pieces
(:func:`~mvlpt.clip.pipeline.run_config.config_for_stage`, :func:`~mvlpt.clip.backbone.create_backbone`,
:func:`~mvlpt.clip.pipeline.data.load_run_tasks`, :func:`~mvlpt.clip.pipeline.stages.build_stage_model`),
so the model is the one ``mvlpt <stage>`` trains; a saved run is read once by
:func:`~mvlpt.clip.pipeline.predict.load_run_model`, the loader of ``Predictor.from_run``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from datasets_vl import collate_vl
from mvlpt.core.checkpoint import CONFIG_FILE, PROMPTS_FILE, save_tensors, write_json
from mvlpt.core.config import to_dict
from mvlpt.core.errors import ConfigError
from mvlpt.core.evaluation import evaluate
from mvlpt.core.runtime import seed_everything
from mvlpt.core.stages import TRAINED_STAGES

from .backbone import Backbone, create_backbone
from .pipeline.data import RunTask, load_run_tasks, shots_run_dir
from .pipeline.predict import Predictor, load_run_model
from .pipeline.run_config import CLIPRunConfig, config_for_stage, load_run_config
from .pipeline.stages import SavedRun, StageModel, _set_threads, build_stage_model, init_run_dir, read_run
from .task_model import CLIPTaskModel


def _run_config(config: str | Path | Mapping[str, Any] | CLIPRunConfig, overrides: Sequence[str]) -> CLIPRunConfig:
    """A YAML path, a config mapping or a :class:`CLIPRunConfig` (+ ``key=value`` overrides) → a validated config."""
    if isinstance(config, CLIPRunConfig):
        return load_run_config(None, overrides, data=to_dict(config)) if overrides else config
    if isinstance(config, Mapping):
        return load_run_config(None, overrides, data=dict(config))
    if isinstance(config, (str, Path)):
        return load_run_config(config, overrides)
    raise ConfigError(f"config must be a YAML path, a mapping or a CLIPRunConfig, found {type(config).__name__}")


@dataclass
class PromptedModel:
    """A prompted CLIP and what its next step needs.

    Attributes:
        model: the :class:`~mvlpt.clip.task_model.CLIPTaskModel` (a zero-shot run: ``CLIPZeroShot``).
        backbone: the frozen :class:`~mvlpt.clip.backbone.Backbone` (``tokenizer``, ``preprocess`` below).
        config: the resolved run config (``resolved_tasks``: each task's name, type, class names, templates).
        run_dir: where :meth:`trainer` writes (built from a config), or the saved run that was read.
    """

    model: torch.nn.Module
    backbone: Backbone
    config: CLIPRunConfig
    run_dir: Path | None = None
    _built: StageModel | None = field(default=None, repr=False)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any] | CLIPRunConfig, stage: str | None = None,
                    overrides: Sequence[str] = (), backbone: Backbone | None = None) -> "PromptedModel":
        """The task model that ``mvlpt <stage> --config config [overrides]`` trains, before its first step:
        prompts initialised as the stage does (``target``: from its source run; ``source``: with the teachers
        loaded), its tasks' datasets loaded. ``stage``: a trained stage (teachers / source / target / single),
        default the config's ``stage``; its ``stages.<stage>`` section is merged in. No preflight runs and
        nothing is written until :meth:`trainer`."""
        cfg = _run_config(config, overrides)
        stage = stage or cfg.stage
        if stage not in TRAINED_STAGES:
            raise ConfigError(f"stage {stage!r} has no prompts to train; give one of {', '.join(TRAINED_STAGES)} "
                              "(a zero-shot run's model loads with create_prompted_model(run=...))")
        cfg = config_for_stage(cfg, stage)
        _set_threads(cfg)
        seed_everything(cfg.train.seed)
        bb = backbone or create_backbone(cfg.backbone)
        tasks = load_run_tasks(cfg, bb.preprocess)
        built = build_stage_model(cfg, bb, tasks, shots_run_dir(cfg, cfg.resolved_run_dir(), tasks))
        return cls(built.model, bb, built.cfg, built.run_dir, built)

    @classmethod
    def from_run(cls, run: str | Path | SavedRun, backbone: Backbone | None = None) -> "PromptedModel":
        """A saved run's model: its backbone and its best (else latest) prompts, ``config.json`` read once
        (the loader of ``Predictor.from_run``; a zero-shot run gives its ``CLIPZeroShot``). No data is loaded."""
        saved = run if isinstance(run, SavedRun) else read_run(run, "run", zeroshot=True)
        cfg, model, bb = load_run_model(saved, backbone)
        return cls(model, bb, cfg, saved.path)

    # -- what the model knows ----------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self.backbone.tokenizer

    @property
    def preprocess(self) -> Any:
        """The backbone's :class:`datasets_vl.Preprocess` (``eval_transform()``, ``transforms()``)."""
        return self.backbone.preprocess

    @property
    def infos(self) -> list[dict[str, Any]]:
        """Each task's description (name, task_type, classnames, templates), in task-id order."""
        return self.config.resolved_tasks

    @property
    def task_names(self) -> list[str]:
        return [i["name"] for i in self.infos]

    @property
    def tasks(self) -> list[RunTask] | None:
        """The loaded datasets per task (``train``, ``val``, ``eval``) when built from a config, else None."""
        return self._built.tasks if self._built is not None else None

    @property
    def teacher(self) -> CLIPTaskModel | None:
        """The source stage's frozen teacher (distillation), else None."""
        return self._built.teacher if self._built is not None else None

    # -- next steps --------------------------------------------------------------------------------
    def trainer(self, run_dir: str | Path | None = None) -> Any:
        """The core :class:`~mvlpt.core.trainer.Trainer` of this stage, as ``mvlpt <stage>`` builds it (per-task
        training sets, ``collate_vl``, the validation sets when the config selects on them, the teacher, the
        resolved config bound to ``run_dir``, default the stage's own). The run directory is prepared as the
        stage runner does (cleared under ``fresh``, few-shot manifests written); ``.fit()`` trains. The stage's
        reporting (best checkpoint on test, ``results.md``) is :func:`mvlpt.clip.pipeline.run_stage`'s."""
        if self._built is None:
            raise ConfigError(f"this model was loaded from the saved run {self.run_dir} and has no training data; "
                              "build it from a config to train: create_prompted_model(config, stage=...)")
        built = self._built
        if run_dir is not None and Path(run_dir) != built.run_dir:
            built = dataclasses.replace(built, cfg=dataclasses.replace(built.cfg, run_dir=str(run_dir)),
                                        run_dir=Path(run_dir))
            self._built, self.config, self.run_dir = built, built.cfg, built.run_dir
        init_run_dir(built.cfg, built.tasks, built.run_dir)
        return built.trainer()

    def predictor(self, device: str = "auto") -> Predictor:
        """A :class:`~mvlpt.clip.pipeline.predict.Predictor` over this model (moved to ``device``, eval mode)."""
        return Predictor(self.model, self.infos, self.backbone, device)

    def predict(self, images: Sequence[Any], tasks: str | int | Sequence[str | int] | None = None,
                questions: Sequence[str | None] | None = None, device: str = "auto", **kw: Any) -> list[dict[str, Any]]:
        """:meth:`Predictor.predict <mvlpt.clip.pipeline.predict.Predictor.predict>` with this model: one dict per
        image (``task``, ``prediction``, ``class_index``, ``prob``; ``top`` with ``topk > 1``)."""
        return self.predictor(device).predict(images, tasks, questions, **kw)

    def evaluate(self) -> dict[str, float]:
        """Metrics on each task's reported split (``eval_split``) with the config's loop settings
        (:func:`mvlpt.core.evaluation.evaluate`); a saved run's evaluation data is loaded from its config."""
        tasks = self.tasks or load_run_tasks(self.config, self.preprocess, None, need_train=False)
        return evaluate(self.model, [t.eval for t in tasks], collate_vl, self.config.train)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``prompts.safetensors`` and ``config.json`` to ``directory``: a run directory that
        :meth:`from_run`, ``Predictor.from_run`` and ``mvlpt predict --run`` load (prompts only: the backbone
        is named by the config). Returns ``directory``. PEFT has no CLIP prompt type, so there is no PEFT export."""
        if not isinstance(self.model, CLIPTaskModel):
            raise ConfigError("a zero-shot CLIP has no prompts to save")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / PROMPTS_FILE, self.model.trainable_state_dict())
        write_json(out / CONFIG_FILE, to_dict(dataclasses.replace(self.config, run_dir=str(out))))
        return out


def create_prompted_model(config: str | Path | Mapping[str, Any] | CLIPRunConfig | None = None, *,
                          run: str | Path | SavedRun | None = None, stage: str | None = None,
                          overrides: Sequence[str] = (), backbone: Backbone | None = None) -> PromptedModel:
    """A prompted CLIP from a config (:meth:`PromptedModel.from_config`: fresh prompts of ``stage``, data
    loaded, ready for :meth:`~PromptedModel.trainer`) or from a saved ``run`` (:meth:`PromptedModel.from_run`:
    its trained prompts, ready for :meth:`~PromptedModel.predict`). Give exactly one of ``config`` and ``run``;
    ``backbone`` shares an already loaded one."""
    if (config is None) == (run is None):
        raise ConfigError("create_prompted_model: give a config (to build fresh prompts) or run= (a saved run), "
                          "not both and not neither")
    if run is not None:
        if stage is not None or overrides:
            raise ConfigError("create_prompted_model(run=...) loads the run's own config; stage and overrides "
                              "apply to a config")
        return PromptedModel.from_run(run, backbone)
    assert config is not None
    return PromptedModel.from_config(config, stage, overrides, backbone)


__all__ = ["PromptedModel", "create_prompted_model"]
