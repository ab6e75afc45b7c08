"""MPT's three stages as presets of one prompt configuration.

* ``teachers`` — a vanilla prompt per source task, no distillation;
* ``source``   — decomposed prompts on all source tasks jointly, distilled from the teachers;
* ``target``   — decomposed prompt initialised from the source (``P*`` + mean factors),
  training the task factors (optionally ``P*`` too).

Heads build their prompt modules with :func:`build_stage_prompt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

from torch import Tensor

from .checkpoint import load_run_prompts, sub_state
from .errors import CheckpointError, ConfigError
from .prompts import DecomposedPrompt, PromptModule, VanillaPrompt, build_prompt
from .transfer import init_from_source, init_vanilla_from_source

Stage = Literal["teachers", "source", "target", "single"]


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
        kind = "vanilla" if stage in ("teachers", "single") else "decomposed"
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


def build_stage_prompt(
    cfg: PromptConfig,
    num_tasks: int,
    shape: Sequence[int],
    embed_text: Callable[[str], Tensor] | None = None,
    source_key: str = "",
) -> PromptModule:
    """Build a prompt module from a *resolved* :class:`PromptConfig`.

    Args:
        num_tasks: tasks of this stage.
        shape: ``(l, d)`` or ``(layers, l, d)`` (``l`` should equal ``cfg.length``).
        embed_text: head callback mapping text to token embeddings ``(n, d)`` (for ``init: text``).
        source_key: prefix of this module's tensors in the source checkpoint (e.g. ``"text_prompt."``).
    """
    if cfg.kind == "auto" or cfg.init == "auto":
        raise ConfigError("resolve the prompt config with resolve_prompt_config(cfg, stage) first")
    prompt = build_prompt(cfg.kind, num_tasks, shape, rank=cfg.rank, init_std=cfg.init_std, factor_init=cfg.factor_init)
    if cfg.init == "text":
        if embed_text is None:
            raise ConfigError("prompt.init=text is not supported by this head (no text embedder)")
        prompt.init_from_embeddings(embed_text(cfg.init_text))  # type: ignore[attr-defined]
    elif cfg.init == "source":
        tensors, _ = load_run_prompts(cfg.source_path)  # type: ignore[arg-type]
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
