"""Configuration of the prompted CLIP: which prompt method, and the text / visual prompt shapes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from mvlpt.core.errors import ConfigError
from mvlpt.core.stages import PromptConfig

from .prompts import prompt_method


@dataclass
class CLIPPromptConfig:
    """Settings of :class:`~mvlpt.clip.task_model.CLIPTaskModel`.

    ``method`` is the single switch, a name in the registry :data:`~mvlpt.clip.prompts.PROMPT_METHODS`
    (what a method learns is its own declaration, ``uses_text`` / ``uses_visual``): ``coop`` learns the
    text context only (images are encoded by the frozen image tower as is), ``vpt`` the visual prompts
    only (class texts are the tasks' hand-written templates), ``upt`` both, produced from one prompt
    set by a learned mapping. Each prompt is a core :class:`~mvlpt.core.stages.PromptConfig` (kind, length, rank,
    initialisation, what trains), resolved by stage (teachers/source/target/single).

    Attributes:
        method: a registered prompt method: ``coop`` | ``vpt`` | ``upt`` (+ any registered later).
        text: the text context (CoOp). ``length`` 0 = no learned context.
        visual: the visual prompt (VPT). ``length`` 0 = no visual prompt. MVLPT's UPT runs use
            short prompts (4 text + 4 visual tokens).
        vpt_deep: a fresh set of visual prompt tokens at every layer (deep VPT) instead of once
            after the class token (shallow VPT).
        class_token_position: where the class name sits relative to the learned context:
            ``end`` ("[ctx] name."), ``middle`` ("[ctx/2] name [ctx/2]."), ``front`` ("name [ctx].").
        class_specific_context: one context per class (CoOp's CSC) instead of one per task.
        upt_width: width of UPT's one-layer transformer mapping.
        upt_heads: attention heads of that transformer (MVLPT: 1).
        vqa_max_answers: candidate answers scored per VQA question: the most frequent answers of
            the task's vocabulary (0 = the whole vocabulary).
        vqa_template: text scored for a (question, answer) pair, with ``{question}`` and
            ``{answer}`` (or ``{}``) slots. A VQA task's own template is used instead when it has
            a ``{question}`` slot.
        checkpointing: activation checkpointing in the frozen towers (saves memory for large
            class unions and VQA candidate sets at the cost of a second forward).
        logit_scale: multiplier of the cosine similarities; ``null`` = CLIP's learned ``exp(logit_scale)``.
        shared_prompt: MVLPT's multitask training: one vanilla prompt (per prompt module) used by every
            task, and each classification sample scored against the union of all classification tasks'
            classes (no per-task mask; VQA samples keep their own answer candidates). Set by the
            source stage with ``source_mode: mvlpt``.
    """

    method: str = "coop"
    text: PromptConfig = field(default_factory=lambda: PromptConfig(length=16))
    visual: PromptConfig = field(default_factory=lambda: PromptConfig(length=16))
    vpt_deep: bool = True
    class_token_position: Literal["end", "middle", "front"] = "end"
    class_specific_context: bool = False
    upt_width: int = 128
    upt_heads: int = 1
    vqa_max_answers: int = 0
    vqa_template: str = "question: {question} answer: {answer}."
    checkpointing: bool = False
    logit_scale: float | None = None
    shared_prompt: bool = False

    def validate(self) -> None:
        method = prompt_method(self.method)
        self.text.validate()
        self.visual.validate()
        if self.class_token_position not in ("end", "middle", "front"):
            raise ConfigError(f"prompt.class_token_position must be end, middle or front, found {self.class_token_position!r}")
        method.check_config(self)
        if self.upt_width < 1 or self.upt_heads < 1 or self.upt_width % self.upt_heads:
            raise ConfigError(f"prompt.upt_width ({self.upt_width}) must be a positive multiple of prompt.upt_heads ({self.upt_heads})")
        if self.vqa_max_answers < 0:
            raise ConfigError(f"prompt.vqa_max_answers must be >= 0 (0 = whole vocabulary), found {self.vqa_max_answers}")
        if "{question}" not in self.vqa_template or not ("{answer}" in self.vqa_template or "{}" in self.vqa_template):
            raise ConfigError(f"prompt.vqa_template must have a {{question}} and an {{answer}} slot, found {self.vqa_template!r}")
        if self.logit_scale is not None and self.logit_scale <= 0:
            raise ConfigError(f"prompt.logit_scale must be > 0 (or null for CLIP's), found {self.logit_scale}")

    def as_vanilla(self, what: str) -> "CLIPPromptConfig":
        """The text / visual prompts as vanilla prompts (MVLPT's one shared prompt, ``source_mode: mvlpt``):
        ``auto`` kinds become ``vanilla``, a ``decomposed`` kind is refused naming ``what`` needs them, and
        MPT's decomposed groups in ``train`` fall back to ``auto`` (a vanilla prompt trains all of it)."""
        parts = {}
        for name in ("text", "visual"):
            sub = getattr(self, name)
            if sub.kind == "decomposed":
                raise ConfigError(f"source_mode: mvlpt trains vanilla prompts ({what}); prompt.{name}.kind is "
                                  "decomposed: set it to vanilla or auto, or use source_mode: mpt")
            train = sub.train
            if isinstance(train, list) and any(g in ("shared", "task_factors") for g in train):
                train = "auto"
            parts[name] = dataclasses.replace(sub, kind="vanilla", train=train)
        return dataclasses.replace(self, **parts)

    @property
    def uses_text(self) -> bool:
        """Whether the method learns a text context (its declaration) and it is non-empty."""
        return prompt_method(self.method).uses_text and self.text.length > 0

    @property
    def uses_visual(self) -> bool:
        """Whether the method learns visual prompts (its declaration) and they are non-empty."""
        return prompt_method(self.method).uses_visual and self.visual.length > 0
