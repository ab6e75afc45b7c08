"""MPT's three stages as presets of one prompt configuration.

* ``teachers`` — a vanilla prompt per source task, no distillation;
* ``source``   — decomposed prompts on all source tasks jointly, distilled from the teachers;
* ``target``   — decomposed prompt initialised from the source (``P*`` + mean factors),
  training the task factors (optionally ``P*`` too).

Heads build their prompt modules with :func:`build_stage_prompt`. A source run is read once
(:class:`SourceRuns`, one per command or model) and its tensors, not its path, are handed to each
prompt module that starts from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence, get_args

from torch import Tensor

from .checkpoint import load_run_prompts, sub_state
from .errors import CheckpointError, ConfigError
from .prompts import DecomposedPrompt, PromptModule, VanillaPrompt, build_prompt
from .transfer import init_from_source, init_vanilla_from_source

#: MPT's three stages, in order (the T5 head trains these)
MPTStage = Literal["teachers", "source", "target"]
#: every stage that trains prompts: MPT's three and the single-task baseline (the CLIP head trains these)
Stage = Literal[MPTStage, "single"]
MPT_STAGES: tuple[str, ...] = get_args(MPTStage)
TRAINED_STAGES: tuple[str, ...] = get_args(Stage)
#: stages whose tasks are the source tasks (the others run on the target)
SOURCE_STAGES: tuple[str, ...] = ("teachers", "source")
#: stages whose prompt is vanilla by default (``kind: auto``); the others are decomposed
VANILLA_STAGES: tuple[str, ...] = ("teachers", "single")


@dataclass
class PromptConfig:
    """One prompt module's settings.

    Attributes:
        kind: ``vanilla`` (independent prompt per task) or ``decomposed`` (``P* ⊙ U Vᵀ``);
            ``auto`` picks by stage (teachers/single → vanilla, source/target → decomposed).
        length: prompt length ``l`` (tokens).
        rank: rank ``r`` of the task factors.
        init: ``random``, ``text`` (token embeddings of ``init_text``) or ``source`` (a trained
            source run, ``source_path``); ``auto`` → ``source`` for the target stage, else ``random``.
        init_text: text whose token embeddings initialise the prompt (``init: text``).
        init_std: std of the random initialisation.
        factor_init: random init of the task factors: ``ones`` (``U Vᵀ ≈ 1``, ``P_k ≈ P*``) or
            ``peft`` (PEFT's ``N(0, init_std²)``, ``P_k ≈ 0`` at step 0).
        source_path: run dir / checkpoint dir / safetensors file of the source stage.
        source_init: ``mean`` (``P*`` + mean of source factors), ``task`` (one source task's
            factors, ``source_task``), or ``shared_only`` (``P*``, factors all-ones).
        source_task: source task id for ``source_init: task``.
        train: parameter groups that train; ``auto`` → everything (MPT's target adapts ``P*`` and
            the factors); ``[task_factors]`` is the factors-only variant.
    """

    kind: Literal["auto", "vanilla", "decomposed"] = "auto"
    length: int = 100
    rank: int = 1
    init: Literal["auto", "random", "text", "source"] = "auto"
    init_text: str = ""
    init_std: float = 0.02
    factor_init: Literal["ones", "peft"] = "ones"
    source_path: str | None = None
    source_init: Literal["mean", "task", "shared_only"] = "mean"
    source_task: int = 0
    train: list[str] | str = "auto"

    def validate(self) -> None:
        if self.length < 0:
            raise ConfigError(f"prompt.length must be >= 0, found {self.length}")
        if self.rank < 1:
            raise ConfigError(f"prompt.rank must be >= 1, found {self.rank}")
        if isinstance(self.train, str) and self.train != "auto":
            raise ConfigError(f"prompt.train must be 'auto' or a list of groups, found {self.train!r}")


def resolve_prompt_config(cfg: PromptConfig, stage: Stage) -> PromptConfig:
    """Fill ``auto`` fields from the stage's defaults and check the combination."""
    kind = cfg.kind
    if kind == "auto":
        kind = "vanilla" if stage in VANILLA_STAGES else "decomposed"
    init = cfg.init
    if init == "auto":
        init = "source" if stage == "target" else "random"
    train = cfg.train
    if train == "auto":
        # MPT adapts P* and the task factors on the target (PEFT does too); factors only is an option
        train = ["task_prompts"] if kind == "vanilla" else ["shared", "task_factors"]
    if init == "source" and not cfg.source_path:
        raise ConfigError(f"stage {stage!r} initialises prompts from a source run: set prompt.source_path")
    # init=source: a decomposed prompt from an MPT (decomposed) source, or a vanilla prompt from an
    # MVLPT (vanilla, one shared prompt) source; which one the checkpoint holds is checked when it is loaded
    if init == "text" and not cfg.init_text:
        raise ConfigError("prompt.init=text needs prompt.init_text")
    out = PromptConfig(**{**cfg.__dict__, "kind": kind, "init": init, "train": list(train)})
    out.validate()
    return out


class SourceRuns:
    """The prompt tensors of the source runs prompts start from, each run read once.

    One instance per command (or per model built): every prompt module, and any other module a head
    loads from the same run (UPT's mapping), gets the tensors from here instead of reading the path again.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, dict[str, Tensor]] = {}

    def tensors(self, path: str | Path) -> dict[str, Tensor]:
        """All prompt tensors of the run / checkpoint / safetensors file at ``path`` (read on first use)."""
        key = str(path)
        if key not in self._tensors:
            self._tensors[key] = load_run_prompts(key)[0]
        return self._tensors[key]

    def for_config(self, cfg: PromptConfig) -> dict[str, Tensor] | None:
        """The source tensors a *resolved* config starts from (``None`` unless ``init: source``)."""
        return self.tensors(cfg.source_path) if cfg.init == "source" and cfg.source_path else None  # type: ignore[arg-type]


def build_stage_prompt(
    cfg: PromptConfig,
    num_tasks: int,
    shape: Sequence[int],
    embed_text: Callable[[str], Tensor] | None = None,
    source_key: str = "",
    source_tensors: Mapping[str, Tensor] | None = None,
) -> PromptModule:
    """Build a prompt module from a *resolved* :class:`PromptConfig`.

    Args:
        num_tasks: tasks of this stage.
        shape: ``(l, d)`` or ``(layers, l, d)`` (``l`` should equal ``cfg.length``).
        embed_text: head callback mapping text to token embeddings ``(n, d)`` (for ``init: text``).
        source_key: prefix of this module's tensors in the source checkpoint (e.g. ``"text_prompt."``).
        source_tensors: the source run's prompt tensors, already read (:class:`SourceRuns`); ``None`` reads
            ``cfg.source_path`` here (``init: source``). ``cfg.source_path`` still names the run in errors.
    """
    if cfg.kind == "auto" or cfg.init == "auto":
        raise ConfigError("resolve the prompt config with resolve_prompt_config(cfg, stage) first")
    prompt = build_prompt(cfg.kind, num_tasks, shape, rank=cfg.rank, init_std=cfg.init_std, factor_init=cfg.factor_init)
    if cfg.init == "text":
        if embed_text is None:
            raise ConfigError("prompt.init=text is not supported by this head (no text embedder)")
        prompt.init_from_embeddings(embed_text(cfg.init_text))  # type: ignore[attr-defined]
    elif cfg.init == "source":
        if source_tensors is None:
            source_tensors = load_run_prompts(cfg.source_path)[0]  # type: ignore[arg-type]
        tensors = source_tensors
        sub = sub_state(tensors, source_key)
        if not sub:
            raise CheckpointError(
                f"source {cfg.source_path} has no tensors under {source_key!r}; found {sorted(tensors)[:8]}"
            )
        if isinstance(prompt, VanillaPrompt):
            # MVLPT: copy the source's single shared prompt (``source_init: task`` picks one of several)
            if "prompts" not in sub:
                raise ConfigError(
                    f"prompt.init=source with prompt.kind=vanilla needs a vanilla source prompt (a source stage "
                    f"run with source_mode: mvlpt); {cfg.source_path} holds {sorted(sub)} under {source_key!r} "
                    "(a decomposed MPT source): set prompt.kind=decomposed")
            init_vanilla_from_source(prompt, sub, cfg.source_task if cfg.source_init == "task" else None)
        else:
            assert isinstance(prompt, DecomposedPrompt)
            if "prompts" in sub and "shared" not in sub:
                raise ConfigError(
                    f"prompt.kind=decomposed cannot start from {cfg.source_path}: it holds vanilla prompts under "
                    f"{source_key!r} (an MVLPT source, source_mode: mvlpt); set prompt.kind=vanilla")
            init_from_source(prompt, sub, mode=cfg.source_init, source_task=cfg.source_task)
    prompt.set_trainable(cfg.train if isinstance(cfg.train, list) else [])
    return prompt
