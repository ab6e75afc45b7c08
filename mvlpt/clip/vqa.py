"""VQA as a source task of the prompted CLIP.

Formulation. CLIP has no question input, so a VQA example (image ``v``, question ``q``, VQA
soft scores ``s_a = min(#annotators who answered a / 3, 1)``) becomes a classification over
candidate answers in which the *text* side carries the question:

* **Candidates**: the task's answer vocabulary (most frequent answers first), capped at
  ``CLIPPromptConfig.vqa_max_answers`` (0 = all), so every question is scored against the same
  ``A`` candidates.
* **Texts**: for every candidate ``a`` the text ``vqa_template.format(question=q, answer=a)``
  (default ``"question: {question} answer: {answer}."``) is encoded by the frozen text tower,
  with the task's learned text context spliced in after the start token (CoOp / UPT); the
  image is encoded with the task's visual prompts (VPT / UPT).
* **Score**: ``logit(q, a) = τ · cos(f_img(v), f_txt(q, a))`` with CLIP's logit scale ``τ``.
* **Loss**: soft cross-entropy of ``softmax_a(logit(q, ·))`` against the soft scores normalised
  to a distribution, ``-Σ_a (s_a / Σ_b s_b) · log p(a | v, q)``. Questions with no candidate
  among their answers (``Σ s = 0``) do not count in the loss.
* **Prediction / metric**: ``argmax_a logit(q, a)``; its soft score ``s_a`` is the VQA accuracy.

The ``B × A`` (question, answer) texts are encoded once per step (``A`` per question); evaluation
encodes them in chunks. Cost grows with ``A``: cap the vocabulary for large VQA sets
(VQAv2: a few hundred answers) and enable ``checkpointing`` in training.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mvlpt.core.errors import DataError

from .tasks import TaskInfo


def vqa_template(task: TaskInfo, default: str) -> str:
    """The task's template when it has a ``{question}`` slot, else ``default``."""
    return task.template if "{question}" in task.template else default


def pair_texts(template: str, questions: Sequence[str], answers: Sequence[str]) -> list[str]:
    """``len(questions) * len(answers)`` texts, question-major."""
    return [template.format(a, answer=a, question=q) for q in questions for a in answers]


def require_questions(task: TaskInfo, questions: Sequence[str | None], indices: Sequence[int]) -> list[str]:
    """The questions of a task's rows; a missing one is a :class:`DataError` naming the samples."""
    missing = [int(i) for q, i in zip(questions, indices) if q is None or not str(q).strip()]
    if missing:
        raise DataError(f"task {task.name!r} is a VQA task but sample(s) {missing[:8]} have no question; "
                        "a VQA dataset must give every sample a 'question' (is the task type right?)")
    return [str(q) for q in questions]


def candidate_scores(answer_scores: Tensor | None, rows: Tensor, n_answers: int, task: TaskInfo) -> Tensor:
    """The soft scores ``(n, A)`` of ``rows`` for the first ``A`` answers (zero-padded)."""
    if answer_scores is None:
        raise DataError(f"task {task.name!r} is a VQA task but the batch has no 'answer_scores' "
                        "(collate VQA samples with datasets_vl.collate_vl)")
    s = answer_scores[rows, :n_answers].float()
    if s.shape[1] < n_answers:
        s = F.pad(s, (0, n_answers - s.shape[1]))
    return s


def soft_target_loss(logits: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row soft cross-entropy against normalised soft scores, and the rows that count."""
    total = scores.sum(-1)
    valid = total > 0
    target = scores / total.clamp(min=1e-12).unsqueeze(-1)
    loss = -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1)
    return torch.where(valid, loss, torch.zeros_like(loss)), valid
