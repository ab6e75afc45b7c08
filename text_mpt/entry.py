"""One Python call to a prompted T5, in the spirit of PEFT's ``get_peft_model`` / ``PeftModel.from_pretrained``:

    >>> pm = create_prompted_model("configs/text/tiny/teachers.yaml")      # fresh prompts, data loaded
    >>> pm.trainer().fit()                                                  # the core Trainer
    >>> pm.predict([{"task": "sst2", "sentence": "a gorgeous film"}])
    >>> pm = create_prompted_model(run="runs/text/tiny/source")            # a saved run's prompts
    >>> pm.export_peft("adapters/source")                                   # a PEFT MPT adapter directory

Nothing here is new logic: a config goes through :func:`text_mpt.pipeline.build_stage` (what
``text-mpt <stage>`` trains), a saved run through :func:`text_mpt.inference.load_trained` (read once),
predictions through :class:`text_mpt.inference.Predictor`, the adapter through
:func:`text_mpt.peft_io.write_peft_adapter` (``text-mpt export-peft``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from mvlpt.core.checkpoint import CONFIG_FILE, PROMPTS_FILE, load_run_prompts, save_tensors, write_json
from mvlpt.core.config import to_dict
from mvlpt.core.errors import ConfigError
from mvlpt.core.evaluation import evaluate

from .config import BackboneConfig, TextRunConfig, load_run_config
from .data import TextCollator
from .inference import Predictor, load_trained
from .model import PromptedT5
from .peft_io import write_peft_adapter
from .pipeline import StageModel, build_parts, build_stage, part_datasets


def _run_config(config: str | Path | Mapping[str, Any] | TextRunConfig, overrides: Sequence[str]) -> TextRunConfig:
    """A YAML path, a config mapping or a :class:`TextRunConfig` (+ ``key=value`` overrides) → a validated config."""
    if isinstance(config, TextRunConfig):
        return load_run_config(None, overrides, data=to_dict(config)) if overrides else config
    if isinstance(config, Mapping):
        return load_run_config(None, overrides, data=dict(config))
    if isinstance(config, (str, Path)):
        return load_run_config(config, overrides)
    raise ConfigError(f"config must be a YAML path, a mapping or a TextRunConfig, found {type(config).__name__}")


@dataclass
class PromptedModel:
    """A prompted T5 and what its next step needs.

    Attributes:
        model: the :class:`~text_mpt.model.PromptedT5` (frozen T5 + the stage's prompt module).
        tokenizer: its tokenizer.
        config: the run config (built from a config: backbone and ``data_root`` resolved).
        run_dir: where :meth:`trainer` writes (built from a config), or the saved run that was read.
    """

    model: PromptedT5
    tokenizer: Any
    config: TextRunConfig
    run_dir: Path | None = None
    _saved_config: dict[str, Any] | None = field(default=None, repr=False)
    _built: StageModel | None = field(default=None, repr=False)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any] | TextRunConfig,
                    overrides: Sequence[str] = ()) -> "PromptedModel":
        """The task model that ``text-mpt <stage> --config config [overrides]`` trains, before its first step
        (:func:`~text_mpt.pipeline.build_stage`): prompts initialised as the stage does (``target``: from
        ``prompt.source_path``; ``source``: with the teachers loaded), the tasks split and tokenised. No preflight
        runs and nothing is written until :meth:`trainer`."""
        built = build_stage(_run_config(config, overrides))
        return cls(built.model, built.tokenizer, built.cfg, Path(built.cfg.output_dir), _built=built)

    @classmethod
    def from_run(cls, run: str | Path, backbone: BackboneConfig | None = None,
                 mode: str | None = None) -> "PromptedModel":
        """A saved run's model (run dir, checkpoint dir or prompts file): its backbone (``meta.backbone``;
        ``backbone`` may name it too and is refused when it names another) and best / latest prompts, for every
        task of the run; prompts and ``config.json`` read once. ``mode``: ``rank`` / ``generate`` / ``both``
        (default the run's ``eval.mode``). No data is loaded."""
        saved = load_run_prompts(run)
        model, tokenizer, run_cfg = load_trained(run, backbone_cfg=backbone, saved=saved)
        if mode is not None:
            model.eval_mode = mode
        return cls(model, tokenizer, run_cfg, Path(run), _saved_config=dict(saved[1]))

    # -- what the model knows ----------------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        return list(self.model.task_names)

    @property
    def teacher(self) -> PromptedT5 | None:
        """The source stage's frozen teacher (distillation), else None."""
        return self._built.teacher if self._built is not None else None

    @property
    def run_config(self) -> dict[str, Any]:
        """The ``config.json`` of these prompts (the run config plus ``meta``: task names, backbone, selection)."""
        if self._built is not None:
            return self._built.run_config()
        assert self._saved_config is not None
        return self._saved_config

    # -- next steps --------------------------------------------------------------------------------
    def trainer(self, run_dir: str | Path | None = None) -> Any:
        """The core :class:`~mvlpt.core.trainer.Trainer` of this stage, as ``text-mpt <stage>`` builds it
        (training sets, ``TextCollator``, the val sets, the teacher, the run config bound to ``run_dir``, default
        the config's); ``.fit()`` trains. The stage's reporting (best checkpoint on test, ``results.md``) is
        :func:`text_mpt.pipeline.train_stage`'s."""
        if self._built is None:
            raise ConfigError(f"this model was loaded from the saved run {self.run_dir} and has no training data; "
                              "build it from a config to train: create_prompted_model(config)")
        if run_dir is not None and str(run_dir) != self._built.cfg.output_dir:
            cfg = replace(self._built.cfg, run_dir=str(run_dir), output_dir=str(run_dir))
            self._built = replace(self._built, cfg=cfg)
            self.config, self.run_dir = cfg, Path(run_dir)
        return self._built.trainer()

    def predictor(self, device: str = "auto") -> Predictor:
        """A :class:`~text_mpt.inference.Predictor` over this model (moved to ``device``, eval mode)."""
        bb = self.config.backbone
        return Predictor(self.model, self.tokenizer, bb.max_input_length, bb.max_target_length, device)

    def predict(self, rows: Sequence[Mapping[str, Any]], batch_size: int = 32, mode: str | None = None,
                device: str = "auto") -> list[dict[str, Any]]:
        """:meth:`Predictor.predict <text_mpt.inference.Predictor.predict>` with this model: one answer per row
        (``{"task": ..., <the task's fields>}``; ``task``, ``answer``, ``pred``, ``label_name``, ``scores``)."""
        return self.predictor(device).predict(rows, batch_size, mode)

    def evaluate(self, part: str | None = None) -> dict[str, float]:
        """Metrics on ``part`` of every task (default ``selection.eval_part``: the seeded ``test`` part, as
        ``text-mpt eval``), with the config's loop settings (:func:`mvlpt.core.evaluation.evaluate`)."""
        cfg = self.config
        part = part or cfg.selection.eval_part
        datasets = part_datasets(cfg, self.tokenizer, build_parts(cfg, (part,)), part)
        return evaluate(self.model, datasets, TextCollator(self.tokenizer.pad_token_id), cfg.train)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``prompts.safetensors`` and ``config.json`` to ``directory``: a checkpoint that :meth:`from_run`,
        ``Predictor.from_run``, ``text-mpt eval`` / ``predict`` and ``prompt.source_path`` load. Returns it."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / PROMPTS_FILE, self.model.trainable_state_dict())
        write_json(out / CONFIG_FILE, self.run_config)
        return out

    def export_peft(self, directory: str | Path) -> Path:
        """Write these (decomposed: source or target) prompts as a PEFT MPT adapter directory, as
        ``text-mpt export-peft`` does (:mod:`text_mpt.peft_io`; load it with ``PeftModel.from_pretrained``)."""
        where = self.run_dir if self._built is None else "this model"
        return write_peft_adapter(self.model.trainable_state_dict(), self.run_config, directory, where)


def create_prompted_model(config: str | Path | Mapping[str, Any] | TextRunConfig | None = None, *,
                          run: str | Path | None = None, overrides: Sequence[str] = (),
                          backbone: BackboneConfig | None = None, mode: str | None = None) -> PromptedModel:
    """A prompted T5 from a config (:meth:`PromptedModel.from_config`: fresh prompts of the config's stage, data
    loaded, ready for :meth:`~PromptedModel.trainer`) or from a saved ``run`` (:meth:`PromptedModel.from_run`:
    its trained prompts, ready for :meth:`~PromptedModel.predict` and :meth:`~PromptedModel.export_peft`).
    Give exactly one of ``config`` and ``run``; ``backbone`` and ``mode`` apply to a run."""
    if (config is None) == (run is None):
        raise ConfigError("create_prompted_model: give a config (to build fresh prompts) or run= (a saved run), "
                          "not both and not neither")
    if run is not None:
        if overrides:
            raise ConfigError("create_prompted_model(run=...) loads the run's own config; overrides apply to a config")
        return PromptedModel.from_run(run, backbone, mode)
    if backbone is not None or mode is not None:
        raise ConfigError("create_prompted_model(config): give the backbone and eval mode in the config "
                          "(backbone.name=..., eval.mode=...); backbone= and mode= apply to run=")
    assert config is not None
    return PromptedModel.from_config(config, overrides)


__all__ = ["PromptedModel", "create_prompted_model"]
