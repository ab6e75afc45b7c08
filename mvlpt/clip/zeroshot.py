"""Zero-shot CLIP with hand-written templates: one template, or an ensemble — the head's one zero-shot scorer.

An ensemble scores a class with the mean of its unit-norm text features over the templates,
re-normalised (CLIP's prompt ensembling: :func:`ensemble_features`, :func:`class_text_features`);
texts go through the one trimmed text encoder (:meth:`TextTower.encode_ids <.text_tower.TextTower.encode_ids>`).
An image is predicted as the class of highest cosine similarity (:func:`zero_shot_predict`,
:func:`zero_shot_accuracy`: tensors in, no task model needed; the tiny-CLIP pretraining scores with them).
:class:`CLIPZeroShot` is the same scorer as a :class:`~mvlpt.core.task_model.TaskModel` without
trainable parameters over a list of tasks (VQA tasks use templates with a ``{question}`` slot,
:mod:`.vqa`), so the Trainer's ``evaluate`` runs it like any prompted model.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mvlpt.core.errors import ConfigError
from mvlpt.core.task_model import Batch, StepOutput, TaskModel

from .class_texts import tokenize
from .scoring import ClassLayout, batch_loss, make_records, score_batch, task_metrics
from .tasks import TaskInfo, check_tasks
from .text_tower import TextTower
from .vision_tower import VisionTower
from .vqa import pair_texts

#: texts encoded at once
TEXT_CHUNK = 1024
#: the generic zero-shot template
TEMPLATE = "a photo of a {}."

Tokenizer = Callable[..., Tensor]


def context_length(clip_model: nn.Module, tokenizer: Tokenizer) -> int:
    """The tokenizer's context length (else the model's)."""
    return int(getattr(tokenizer, "context_length", None) or clip_model.context_length)


@torch.no_grad()
def encode_texts(clip_model: nn.Module, tokenizer: Tokenizer, texts: Sequence[str],
                 tower: TextTower | None = None) -> Tensor:
    """Unit-norm text features ``(N, e)`` (float32), :data:`TEXT_CHUNK` texts per text-tower call."""
    tower = tower or TextTower(clip_model)
    texts, dev, ctx = list(texts), clip_model.logit_scale.device, context_length(clip_model, tokenizer)
    out = [tower.encode_ids(tokenize(tokenizer, texts[s:s + TEXT_CHUNK], ctx).to(dev))
           for s in range(0, len(texts), TEXT_CHUNK)]
    return F.normalize(torch.cat(out).float(), dim=-1)


def ensemble_features(clip_model: nn.Module, tokenizer: Tokenizer, texts_per_template: Sequence[Sequence[str]],
                      tower: TextTower | None = None) -> Tensor:
    """``(N, e)``: the re-normalised mean over templates of each text's unit-norm features."""
    tower = tower or TextTower(clip_model)
    feats = torch.stack([encode_texts(clip_model, tokenizer, texts, tower) for texts in texts_per_template])  # (T, N, e)
    return F.normalize(feats.mean(0), dim=-1)


def class_text_features(clip_model: nn.Module, tokenizer: Tokenizer, class_names: Sequence[str],
                        templates: Sequence[str] = (TEMPLATE,), tower: TextTower | None = None) -> Tensor:
    """``(C, e)`` unit-norm class embeddings: the template ensemble of each class's prompts."""
    return ensemble_features(clip_model, tokenizer, [[t.format(c) for c in class_names] for t in templates], tower)


@torch.no_grad()
def zero_shot_predict(clip_model: nn.Module, images: Tensor, text_features: Tensor, batch_size: int = 256) -> Tensor:
    """Class predictions ``(N,)`` for normalised float images ``(N, 3, H, W)``: highest cosine similarity."""
    device = clip_model.logit_scale.device
    preds = []
    for i in range(0, len(images), batch_size):
        f = clip_model.encode_image(images[i:i + batch_size].to(device), normalize=True).float()
        preds.append((f @ text_features.to(device).T).argmax(-1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def zero_shot_accuracy(clip_model: nn.Module, tokenizer: Tokenizer, images: Tensor, labels: Tensor,
                       class_names: Sequence[str], templates: Sequence[str] = (TEMPLATE,)) -> float:
    """Zero-shot accuracy (a fraction) on normalised float ``images`` with the given prompt templates
    (run in eval mode; the model's mode is restored)."""
    was_training = clip_model.training
    clip_model.eval()
    feats = class_text_features(clip_model, tokenizer, class_names, templates)
    acc = float((zero_shot_predict(clip_model, images, feats) == labels.cpu()).float().mean())
    clip_model.train(was_training)
    return acc


class CLIPZeroShot(TaskModel):
    """Zero-shot CLIP over a list of tasks.

    Args:
        clip_model: frozen open_clip model.
        tokenizer: its tokenizer.
        tasks: the tasks, in task-id order.
        templates_per_task: templates of each task (``None`` = each task's ``template``); more than
            one = ensemble.
        vqa_max_answers: candidate answers per VQA question (0 = the whole vocabulary).
        logit_scale: multiplier of the cosine similarities (``None`` = CLIP's).
    """

    def __init__(self, clip_model: nn.Module, tokenizer: Callable[..., Tensor], tasks: Sequence[TaskInfo],
                 templates_per_task: Sequence[Sequence[str]] | None = None, vqa_max_answers: int = 0,
                 logit_scale: float | None = None):
        super().__init__()
        self.tasks = check_tasks(tasks)
        self.task_names = [t.name for t in self.tasks]
        if templates_per_task is None:
            templates_per_task = [[t.template] for t in self.tasks]
        if len(templates_per_task) != len(self.tasks):
            raise ConfigError(f"templates_per_task has {len(templates_per_task)} entries for {len(self.tasks)} tasks")
        for t, temps in zip(self.tasks, templates_per_task):
            if not temps:
                raise ConfigError(f"task {t.name!r}: empty template list")
            slot = "{question}" if t.task_type == "vqa" else "{}"
            bad = [x for x in temps if slot not in x]
            if bad:
                raise ConfigError(f"task {t.name!r} ({t.task_type}): template(s) {bad} lack a {slot} slot")
        self.templates = [list(t) for t in templates_per_task]
        self.clip = clip_model
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.tower = TextTower(clip_model)
        self.vision = VisionTower(clip_model)
        self.layout = ClassLayout(self.tasks, vqa_max_answers)
        self.fixed_scale = logit_scale
        self._cache: dict[tuple[int, str], Tensor] = {}

    def prompt_modules(self) -> Mapping[str, nn.Module]:
        return {}

    def frozen_modules(self):
        return [self.clip]

    def trainable_parameters_per_task(self) -> dict[str, int]:
        return {"per_task": 0, "shared": 0, "total": 0}

    def _ensemble(self, texts_per_template: list[list[str]]) -> Tensor:
        return ensemble_features(self.clip, self.tokenizer, texts_per_template, self.tower)

    def class_features(self, k: int) -> Tensor:
        """Unit-norm class text features ``(C, e)`` of task ``k`` (template ensemble), cached."""
        key = (k, str(self.clip.logit_scale.device))
        if key not in self._cache:
            names = self.tasks[k].classnames
            self._cache[key] = self._ensemble([[t.format(c) for c in names] for t in self.templates[k]])
        return self._cache[key]

    def pair_features(self, k: int, questions: list[str]) -> Tensor:
        """Unit-norm (question, answer) features ``(n, A, e)`` of task ``k``'s candidate answers."""
        answers = self.tasks[k].classnames[: self.layout.sizes[k]]
        feats = self._ensemble([pair_texts(t, questions, answers) for t in self.templates[k]])
        return feats.reshape(len(questions), len(answers), -1)

    @torch.no_grad()
    def _logits(self, batch: Batch) -> tuple[Tensor, Tensor]:
        img = self.vision.encode(batch["images"])
        scale = float(self.fixed_scale) if self.fixed_scale is not None else self.clip.logit_scale.exp().float()
        logits, _, _ = score_batch(self.layout, batch, img, scale, self.class_features, self.pair_features)
        return logits, img

    def step(self, batch: Batch) -> StepOutput:
        """Loss and masked logits of zero-shot CLIP (nothing to train; usable as a fixed reference)."""
        logits, img = self._logits(batch)
        return StepOutput(loss=batch_loss(self.layout, batch, logits), logits=logits,
                          logit_mask=self.layout.mask(batch["task_ids"]))

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[dict[str, Any]]:
        logits, _ = self._logits(batch)
        return make_records(self.layout, batch, logits)

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, float]:
        return task_metrics(self.task_names, records)
