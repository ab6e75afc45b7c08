"""The prompted CLIP as a core :class:`~mvlpt.core.task_model.TaskModel` (CoOp / VPT / UPT).

One model serves every MPT stage: ``stage`` (teachers / source / target / single) decides,
through :func:`mvlpt.core.stages.resolve_prompt_config`, whether each prompt is a vanilla
prompt per task or MPT's decomposed ``P* ⊙ U_k V_kᵀ``, how it is initialised (random, from
text, or from the source run's ``prompts.safetensors`` under ``"<module>."``) and which
parameter groups train. All CLIP weights are frozen; the frozen towers only compute
gradients with respect to their prompt inputs.

A step encodes the images once (with each sample's own visual prompts), encodes the class
prompts of all the tasks present in the batch in one text-tower call, and scores every sample only
against its own task's classes (:mod:`.scoring`). VQA tasks are scored as described in :mod:`.vqa`.

Frozen work is not repeated: prompt-free image features are shared by every task model of one
backbone for the same batch tensor (the CoOp teacher of a source stage reads the student's,
:mod:`.feature_cache`), class-text features without a learned context (VPT) are computed once per
task while the weights and autocast state stay the same, and a step reads the batch's task ids to
the host once (the teacher not at all).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvlpt.core.errors import ConfigError
from mvlpt.core.runtime import freeze
from mvlpt.core.stages import TRAINED_STAGES, Stage
from mvlpt.core.task_model import Batch, StepOutput, TaskModel, count_trainable

from .class_texts import ClassTextBank, PromptedTexts, start_offset, tokenize
from .feature_cache import autocast_state, weights_generation
from .prompt_config import CLIPPromptConfig
from .prompts import BackboneDims, Prompts, build_prompt_set
from .scoring import ClassLayout, batch_loss, make_records, present_tasks, score_batch, task_metrics
from .tasks import TaskInfo, check_tasks
from .text_tower import TextTower
from .vision_tower import VisionTower
from .vqa import pair_texts, vqa_template

__all__ = ["CLIPTaskModel", "TaskInfo"]

STAGES = TRAINED_STAGES
#: rows of (question, answer) texts encoded at once when no gradient is needed
EVAL_TEXT_CHUNK = 4096


def backbone_label(clip_model: nn.Module) -> str:
    """A readable name of the backbone for error messages."""
    return str(getattr(clip_model, "mvlpt_name", "") or type(clip_model).__name__)


class CLIPTaskModel(TaskModel):
    """Prompted CLIP over a list of tasks.

    Args:
        clip_model: frozen open_clip model (may be shared with other task models, e.g. the teacher).
        tokenizer: its tokenizer.
        tasks: the tasks, in task-id order.
        prompt_cfg: prompt method and shapes.
        stage: ``teachers`` | ``source`` | ``target`` | ``single``.
    """

    def __init__(self, clip_model: nn.Module, tokenizer: Callable[..., Tensor], tasks: Sequence[TaskInfo],
                 prompt_cfg: CLIPPromptConfig, stage: Stage):
        super().__init__()
        if stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, found {stage!r}")
        prompt_cfg.validate()
        if prompt_cfg.shared_prompt:  # MVLPT: one vanilla prompt for every task, union scoring
            prompt_cfg = prompt_cfg.as_vanilla("prompt.shared_prompt: one prompt shared by all tasks")
        self.tasks = check_tasks(tasks)
        self.task_names = [t.name for t in self.tasks]
        self.cfg = prompt_cfg
        self.stage = stage
        self.clip = freeze(clip_model, eval_mode=False)  # kept in eval mode by frozen_modules
        self.tokenizer = tokenizer
        self.text_tower = TextTower(clip_model)
        self.vision_tower = VisionTower(clip_model)
        if prompt_cfg.uses_text:
            self.text_tower.require_prompts(f"prompt.method={prompt_cfg.method} (text context)")
        if prompt_cfg.uses_visual:
            self.vision_tower.require_prompts(f"prompt.method={prompt_cfg.method} (visual prompts)")
        self.layout = ClassLayout(self.tasks, prompt_cfg.vqa_max_answers, union=prompt_cfg.shared_prompt)
        n_ctx = prompt_cfg.text.length if prompt_cfg.uses_text else 0
        dims = BackboneDims(
            text_width=self.text_tower.width if not self.text_tower.unsupported else 0,
            visual_width=self.vision_tower.width if not self.vision_tower.unsupported else 0,
            visual_layers=self.vision_tower.layers if not self.vision_tower.unsupported else 0,
            max_classes=max(self.layout.sizes),
            backbone=backbone_label(clip_model),
        )
        self.prompt_set = build_prompt_set(prompt_cfg, stage, 1 if prompt_cfg.shared_prompt else len(self.tasks), dims,
                                           self._embed_text if not self.text_tower.unsupported else None)
        # fixed parts of the class prompts, tokenised and embedded once
        self.class_texts = ClassTextBank(
            PromptedTexts(self.text_tower, tokenizer, n_ctx, prompt_cfg.class_token_position),
            {k: (self._class_texts(t, n_ctx), list(t.classnames)) for k, t in enumerate(self.tasks)
             if t.task_type == "classification"})
        self.pair_texts = PromptedTexts(self.text_tower, tokenizer, n_ctx, "end")
        self._frozen_text: dict[tuple[int, str, tuple], Tensor] = {}
        self._frozen_generation: tuple[int, ...] | None = None
        self._eval_text: dict[int, Tensor] = {}

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _class_texts(task: TaskInfo, n_ctx: int) -> list[str]:
        """``"name."`` after a learned context (CoOp), else the task's template."""
        if n_ctx > 0:
            return [f"{c}." for c in task.classnames]
        return [task.template.format(c) for c in task.classnames]

    @torch.no_grad()
    def _embed_text(self, text: str) -> Tensor:
        """Token embeddings ``(n, d_text)`` of ``text`` without start / end tokens (``init: text``)."""
        ids = tokenize(self.tokenizer, [text], self.text_tower.context_length).to(self.clip.logit_scale.device)
        start = start_offset(self.tokenizer, ids)
        end = int(self.text_tower.pool_index(ids)[0])
        return self.text_tower.embed(ids)[0, start:end].float()

    # ------------------------------------------------------------------ TaskModel interface
    def prompt_modules(self) -> Mapping[str, nn.Module]:
        return self.prompt_set.prompt_modules()

    def frozen_modules(self):
        return [self.clip]

    def train(self, mode: bool = True) -> "CLIPTaskModel":
        self._eval_text = {}
        return super().train(mode)

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self._eval_text = {}
        super().load_trainable_state_dict(state)

    def trainable_parameters_per_task(self) -> dict[str, int]:
        """``per_task`` (trainable parameters owned by each task), ``shared`` (shared by all tasks),
        the same per module (``text_prompt/per_task`` ...) and ``total`` trainable parameters."""
        out = self.prompt_set.trainable_parameters_per_task()
        out["total"] = count_trainable(self)
        return out

    def check_datasets(self, datasets: Sequence[Any], split: str = "") -> None:
        """Refuse datasets whose class lists / types differ from the tasks' (one dataset per task)."""
        if len(datasets) != len(self.tasks):
            raise ConfigError(f"expected {len(self.tasks)} datasets (one per task {self.task_names}), found {len(datasets)}")
        for task, ds in zip(self.tasks, datasets):
            task.check_dataset(ds, split)

    # ------------------------------------------------------------------ encoding
    @property
    def logit_scale(self) -> Tensor | float:
        if self.cfg.logit_scale is not None:
            return float(self.cfg.logit_scale)
        return self.clip.logit_scale.exp().float()

    def _prompts(self, task_ids: Tensor) -> Prompts:
        """Text prompts of every prompt slot ``(n_slots, ...)`` and visual prompts per sample. All slots are
        computed (a few small tensors; no host-to-device index per step): an absent task's rows get zero
        gradients, as when only the present tasks were computed."""
        if not self.prompt_modules():
            return Prompts()
        n_slots = 1 if self.cfg.shared_prompt else len(self.tasks)
        prompts = self.prompt_set(torch.arange(n_slots, device=task_ids.device))
        rows = torch.zeros_like(task_ids) if self.cfg.shared_prompt else task_ids
        return Prompts(text=prompts.text, visual=prompts.visual[rows] if prompts.visual is not None else None)

    def _check_frozen_text(self) -> None:
        """Forget the frozen class-text features when the backbone's weights changed."""
        gen = weights_generation(self.clip)
        if gen != self._frozen_generation:
            self._frozen_text.clear()
            self._frozen_generation = gen

    def _frozen_class_features(self, k: int) -> Tensor:
        """Class-text features without a learned context: computed once per (task, device, autocast state)
        and kept until the backbone's weights change (:meth:`_check_frozen_text`)."""
        device = self.clip.logit_scale.device
        key = (k, str(device), autocast_state(device.type))
        if key not in self._frozen_text:
            with torch.no_grad():
                self._frozen_text[key] = self.class_texts.features(k, None).detach()
        return self._frozen_text[key]

    def _class_features(self, k: int, ctx: Tensor | None) -> Tensor:
        return self._class_features_many([k], {k: ctx} if ctx is not None else {})[k]

    def _class_features_many(self, tasks: Sequence[int], ctx: Mapping[int, Tensor]) -> dict[int, Tensor]:
        """Class-text features of ``tasks``; those with a learned context come from one text-tower call."""
        out: dict[int, Tensor] = {}
        todo: dict[int, Tensor] = {}
        cached = not self.training and not torch.is_grad_enabled()
        if any(k not in ctx for k in tasks):
            self._check_frozen_text()
        for k in tasks:
            if k not in ctx:  # nothing trainable on the text side: encode once
                out[k] = self._frozen_class_features(k)
            elif cached and k in self._eval_text:
                out[k] = self._eval_text[k]
            else:
                todo[k] = ctx[k]
        if todo:
            new = self.class_texts.features_many(todo, self.cfg.checkpointing and not cached)
            if cached:
                self._eval_text.update(new)
            out.update(new)
        return out

    def _pair_features(self, k: int, questions: list[str], ctx: Tensor | None) -> Tensor:
        """Text features ``(Q, n_answers, e)`` of each question paired with each candidate answer. A
        question asked several times in the batch is encoded once (its features depend only on the text
        and the task's context): VQA sets repeat a few question forms, so this is most of the saving."""
        unique = list(dict.fromkeys(questions))
        if len(unique) < len(questions):
            row = {q: i for i, q in enumerate(unique)}
            feats = self._pair_features(k, unique, ctx)
            return feats[torch.tensor([row[q] for q in questions], device=feats.device)]
        task = self.tasks[k]
        n_ans = self.layout.sizes[k]
        texts = pair_texts(vqa_template(task, self.cfg.vqa_template), questions, task.classnames[:n_ans])
        if ctx is not None and ctx.dim() == 3:  # class-specific context: one per candidate answer
            ctx = ctx[:n_ans].repeat(len(questions), 1, 1)
        grad = torch.is_grad_enabled() and ctx is not None
        chunk = len(texts) if grad else EVAL_TEXT_CHUNK
        feats = []
        with contextlib.nullcontext() if grad else torch.no_grad():
            for s in range(0, len(texts), chunk):
                part = self.pair_texts.prepare(texts[s:s + chunk])
                c = ctx[s:s + chunk] if ctx is not None and ctx.dim() == 3 else ctx
                feats.append(self.pair_texts.encode(part, c, self.cfg.checkpointing and grad))
        return torch.cat(feats).reshape(len(questions), n_ans, -1)

    def _task_prompts(self, task_ids: Tensor) -> tuple[Prompts, dict[int, Tensor]]:
        """The samples' prompts and the text context of each task present (``shared_prompt``: prompt 0
        for every sample and every task's class texts)."""
        prompts = self._prompts(task_ids)
        if prompts.text is None:
            return prompts, {}
        if self.cfg.shared_prompt:
            return prompts, {k: prompts.text[0] for k in range(len(self.tasks))}
        return prompts, {k: prompts.text[k] for k in present_tasks(task_ids)}

    def _scored_tasks(self, task_ids: Tensor) -> list[int]:
        """The classification tasks whose class texts a batch is scored against."""
        present = present_tasks(task_ids)
        if self.layout.union:
            return self.layout.union_tasks if any(self.layout.is_classification[k] for k in present) else []
        return [k for k in present if self.layout.is_classification[k]]

    def _forward(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        task_ids = batch["task_ids"]
        self.layout.check_task_ids(task_ids)
        prompts, ctx = self._task_prompts(task_ids)
        if prompts.visual is None:
            with torch.no_grad():
                img = self.vision_tower.encode(batch["images"])
        else:
            img = self.vision_tower.encode(batch["images"], prompts.visual, self.cfg.checkpointing)
        feats = self._class_features_many(self._scored_tasks(task_ids), ctx)
        logits, target, valid = score_batch(
            self.layout, batch, img, self.logit_scale, feats.__getitem__,
            lambda k, qs: self._pair_features(k, qs, ctx.get(k)))
        return logits, img.float(), target, valid

    def step(self, batch: Batch) -> StepOutput:
        """Loss, masked logits ``(B, C_union)`` and hidden ``(B, 2, e)`` for distillation = [image feature,
        text feature of the sample's target class], both **before** normalisation (their norms and
        directions both differ between a teacher's and a student's prompt; after normalisation the
        MSE is ~0). A slot is masked where the prompt cannot change it: the image slot without
        visual prompts (CoOp: the same frozen image features in teacher and student), the text
        slot without a text context (VPT: hand templates) or without a target."""
        logits, img, target, valid = self._forward(batch)
        loss = batch_loss(self.layout, batch, logits)
        hidden = torch.stack([img, target], dim=1)
        img_ok = torch.full_like(valid, self.cfg.uses_visual)
        txt_ok = valid & bool(self.cfg.uses_text)
        hidden_mask = torch.stack([img_ok, txt_ok], dim=1)
        return StepOutput(loss=loss, logits=logits, logit_mask=self.layout.mask(batch["task_ids"]),
                          hidden=hidden, hidden_mask=hidden_mask)

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[dict[str, Any]]:
        """Records ``{task_id, index, pred, label, correct}`` (VQA: ``correct`` = soft score of the prediction)."""
        logits, _, _, _ = self._forward(batch)
        return make_records(self.layout, batch, logits)

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        """``"<task>/accuracy"`` (percent), ``"<task>/n"`` and ``"score"`` (mean accuracy over tasks)."""
        return task_metrics(self.task_names, records)

    # ------------------------------------------------------------------ health figures (core contract)
    @torch.no_grad()
    def reference_norms(self) -> dict[str, float]:
        """The backbone's own token norms: the mean row norm of the token embedding (text prompts) and of
        the image tower's input tokens after ``ln_pre`` at the positional embeddings (visual prompts)."""
        out: dict[str, float] = {}
        mods = self.prompt_modules()
        text, visual = mods.get("text_prompt"), mods.get("visual_prompt")
        if text is not None and not self.text_tower.unsupported and getattr(text, "dim", None) == self.text_tower.width:
            out["text_prompt"] = float(self.text_tower.src.token_embedding.weight.float().norm(dim=-1).mean())
        if visual is not None and not self.vision_tower.unsupported and getattr(visual, "dim", None) == self.vision_tower.width:
            v = self.vision_tower.visual
            out["visual_prompt"] = float(v.ln_pre(v.positional_embedding.float()).norm(dim=-1).mean())
        return out

    def chance_levels(self) -> dict[str, float]:
        """``"<task>/accuracy"``: 100 / number of classes (classification tasks)."""
        return {f"{t.name}/accuracy": 100.0 / len(t.classnames) for t in self.tasks
                if t.task_type == "classification" and len(t.classnames) > 1}

    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """``"<task>/class_text_cos"``: mean pairwise cosine of a task's class-text features under its
        learned context (near 1 = every class name maps to the same feature: the prompt collapsed)."""
        if not self.cfg.uses_text:
            return {}
        was = self.training
        self.eval()
        out = {}
        try:
            _, ctx = self._task_prompts(torch.arange(len(self.tasks), device=self.clip.logit_scale.device))
            for k, task in enumerate(self.tasks):
                if task.task_type != "classification" or len(task.classnames) < 2 or k not in ctx:
                    continue
                f = F.normalize(self._class_features(k, ctx[k]).float(), dim=-1)
                c = f @ f.T
                n = c.shape[0]
                out[f"{task.name}/class_text_cos"] = round(float((c.sum() - c.diagonal().sum()) / (n * (n - 1))), 6)
        finally:
            self.train(was)
        return out
