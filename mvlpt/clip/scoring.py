"""Multi-task scoring shared by the prompted and the zero-shot CLIP.

Logits use one fixed global layout: the classes (VQA: candidate answers) of all tasks
concatenated in task order, ``C_union`` columns. A sample is scored only against its own
task's columns; every other column is ``-inf`` (``logit_mask`` is False there), so a softmax
over the row is a softmax over the sample's own classes, and a teacher and a student built on
the same task list produce aligned logits for KL distillation.

``ClassLayout(union=True)`` is MVLPT's multitask scoring (``source_mode: mvlpt``): a sample of a
classification task is scored against the classes of *all* classification tasks (their class
lists concatenated in task order; a class name that occurs in two datasets stays two separate
columns, as in the official MVLPT code) and its loss is the cross-entropy over that union
against its union index (position of its task's block + label). VQA candidates depend on the
question, so a VQA sample keeps its own answer candidates (and its soft cross-entropy), and the
VQA columns stay ``-inf`` for classification samples. Predictions and accuracies stay per task
(argmax over the sample's own task's columns), as the official code evaluates each dataset.

Host syncs. The training step reads the batch's task ids to the host once (:func:`host_task_ids`,
remembered for the last tensor, so a teacher scoring the same batch reads nothing again); rows of a
task are found with ``nonzero_static`` of the known count and the layout's lookup tables live on
the device, so scoring and the loss wait for the device nowhere else. Labels are checked eagerly
on the CPU; on an accelerator each task's labels are checked the first time the task appears.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mvlpt.core.errors import ConfigError, DataError, TaskIdError

from .tasks import TaskInfo
from .vqa import candidate_scores, require_questions, soft_target_loss

#: class text features of a task: ``task id -> (C_k, e)`` (any norm; normalised for scoring)
ClassFeatures = Callable[[int], Tensor]
#: (question, answer) text features of a task's rows: ``(task id, questions) -> (n, A_k, e)`` (any norm)
PairFeatures = Callable[[int, list[str]], Tensor]

_last_ids: tuple[weakref.ref, int, list[int]] | None = None


def host_task_ids(task_ids: Tensor) -> list[int]:
    """``task_ids.tolist()`` (one host sync), remembered for the last tensor asked: the teacher of a
    source stage scores the very batch the student just read."""
    global _last_ids
    if _last_ids is not None and _last_ids[0]() is task_ids and _last_ids[1] == task_ids._version:
        return _last_ids[2]
    ids = [int(k) for k in task_ids.tolist()]
    _last_ids = (weakref.ref(task_ids), task_ids._version, ids)
    return ids


def check_every_batch(device: torch.device) -> bool:
    """Whether labels are checked in every batch (CPU: nothing to wait for) or once per task (accelerators)."""
    return device.type == "cpu"


def present_tasks(task_ids: Tensor) -> list[int]:
    """The distinct task ids of a batch, sorted (from :func:`host_task_ids`)."""
    return sorted(set(host_task_ids(task_ids)))


def task_rows(task_ids: Tensor, k: int) -> Tensor:
    """Rows of task ``k`` (ascending) without a host sync: the count is known on the host."""
    n = host_task_ids(task_ids).count(k)
    return torch.nonzero_static(task_ids == k, size=n).squeeze(1)


class ClassLayout:
    """Column ranges of the tasks in the global logit layout."""

    def __init__(self, tasks: Sequence[TaskInfo], vqa_max_answers: int = 0, union: bool = False):
        self.tasks = list(tasks)
        self.sizes = [t.num_candidates(vqa_max_answers) for t in self.tasks]
        self.offsets = [sum(self.sizes[:k]) for k in range(len(self.sizes))]
        self.size = sum(self.sizes)
        #: MVLPT scoring: classification samples get a softmax over the union of all classification
        #: tasks' classes (VQA samples keep their own candidates)
        self.union = bool(union)
        self.is_classification = [t.task_type == "classification" for t in self.tasks]
        #: classification tasks, in task order, and their columns: the union's classes
        self.union_tasks = [k for k, c in enumerate(self.is_classification) if c]
        self.union_columns = [c for k in self.union_tasks for c in range(self.offsets[k], self.offsets[k] + self.sizes[k])]
        self._union_start = {k: sum(self.sizes[j] for j in self.union_tasks[:i]) for i, k in enumerate(self.union_tasks)}
        if self.union and not self.union_tasks:
            raise ConfigError("union scoring over the tasks' classes (source_mode: mvlpt / prompt.shared_prompt) "
                              "needs at least one classification task; all tasks are VQA")
        self._tables: dict[torch.device, dict[str, Tensor]] = {}
        self._labels_checked: set[int] = set()

    def table(self, name: str, device: torch.device) -> Tensor:
        """A lookup table on ``device``, built once per device (``offsets``, ``sizes``, ``union_start``,
        ``is_classification``, ``in_union``, ``union_columns``): no host-to-device copy per step."""
        if device not in self._tables:
            n = len(self.tasks)
            in_union = torch.zeros(self.size, dtype=torch.bool)
            in_union[self.union_columns] = True
            cpu = {"offsets": torch.tensor(self.offsets, dtype=torch.long),
                   "sizes": torch.tensor(self.sizes, dtype=torch.long),
                   "union_start": torch.tensor([self._union_start.get(k, 0) for k in range(n)], dtype=torch.long),
                   "is_classification": torch.tensor(self.is_classification, dtype=torch.bool),
                   "in_union": in_union,
                   "union_columns": torch.tensor(self.union_columns, dtype=torch.long)}
            self._tables[device] = {k: v.to(device) for k, v in cpu.items()}
        return self._tables[device][name]

    def columns(self, k: int) -> slice:
        return slice(self.offsets[k], self.offsets[k] + self.sizes[k])

    def check_task_ids(self, task_ids: Tensor) -> None:
        ids = host_task_ids(task_ids)
        if ids and (min(ids) < 0 or max(ids) >= len(self.tasks)):
            raise TaskIdError(f"task ids {sorted(set(ids))} out of range: this model has "
                              f"{len(self.tasks)} task(s) {[t.name for t in self.tasks]}")

    def check_labels(self, task_ids: Tensor, labels: Tensor) -> None:
        """Refuse a classification label outside its task's classes. A CPU batch is checked whole (no
        device to wait for); on an accelerator a task's labels are checked on its first appearance only
        (the datasets' class lists are checked before training; a later bad label still fails, in the
        loss's indexing, as a device-side assertion)."""
        tasks = [k for k in present_tasks(task_ids) if self.is_classification[k]]
        every = check_every_batch(labels.device)
        if not every:
            tasks = [k for k in tasks if k not in self._labels_checked]
            if not tasks:
                return
        sizes = self.table("sizes", labels.device)[task_ids]
        bad = (labels < 0) | (labels >= sizes)
        bad &= self.table("is_classification", labels.device)[task_ids]
        if not every:
            self._labels_checked.update(tasks)
            checked = torch.zeros(len(self.tasks), dtype=torch.bool)
            checked[tasks] = True
            bad &= checked.to(labels.device)[task_ids]
        rows = bad.nonzero(as_tuple=True)[0]
        if rows.numel():
            i = int(rows[0])
            k = int(task_ids[i])
            raise DataError(f"task {self.tasks[k].name!r}: label {int(labels[i])} is outside its {self.sizes[k]} "
                            "classes; the model's class list does not match the dataset's")

    def classification_rows(self, task_ids: Tensor) -> Tensor:
        """``(B,)`` bool: the samples of classification tasks."""
        return self.table("is_classification", task_ids.device)[task_ids]

    def classification_row_index(self, task_ids: Tensor) -> Tensor:
        """Indices of the classification samples (ascending), without a host sync."""
        n = sum(1 for k in host_task_ids(task_ids) if self.is_classification[k])
        return torch.nonzero_static(self.classification_rows(task_ids), size=n).squeeze(1)

    def union_labels(self, task_ids: Tensor, labels: Tensor, check: bool = True) -> Tensor:
        """Each classification sample's position in the union of the classification classes
        (``union_columns``): start of its task's block + label; labels are checked unless ``check`` is False."""
        if check:
            sizes = self.table("sizes", labels.device)[task_ids]
            bad = ((labels < 0) | (labels >= sizes)).nonzero(as_tuple=True)[0]
            if bad.numel():
                i = int(bad[0])
                k = int(task_ids[i])
                raise DataError(f"task {self.tasks[k].name!r}: label {int(labels[i])} is outside its {self.sizes[k]} "
                                "classes; the model's class list does not match the dataset's")
        return self.table("union_start", labels.device)[task_ids] + labels

    def mask(self, task_ids: Tensor) -> Tensor:
        """``(B, C_union)`` bool, True on each sample's own task's columns (union scoring: a
        classification sample's row is True on every classification column)."""
        cols = torch.arange(self.size, device=task_ids.device)
        off = self.table("offsets", task_ids.device)[task_ids]
        size = self.table("sizes", task_ids.device)[task_ids]
        own = (cols >= off[:, None]) & (cols < (off + size)[:, None])
        if not self.union:
            return own
        in_union = self.table("in_union", task_ids.device)
        return torch.where(self.classification_rows(task_ids)[:, None], in_union[None, :], own)


def score_batch(layout: ClassLayout, batch: dict[str, Any], image_features: Tensor, scale: Tensor | float,
                class_features: ClassFeatures, pair_features: PairFeatures) -> tuple[Tensor, Tensor, Tensor]:
    """Masked logits of a batch and each sample's target text feature (before normalisation, for distillation).

    Each task present is encoded once (classes) or once per question (VQA candidates).

    Returns:
        ``logits`` ``(B, C_union)`` (``-inf`` outside each sample's task), ``target`` ``(B, e)``
        (text feature of the label's class / top answer as the text tower returns it, i.e. not unit
        norm; zeros if none) and ``target_valid`` ``(B,)``. Logits use the normalised features.
    """
    task_ids, labels = batch["task_ids"], batch["labels"]
    layout.check_task_ids(task_ids)
    layout.check_labels(task_ids, labels)
    b, e = image_features.shape
    img = F.normalize(image_features.float(), dim=-1)
    logits = img.new_full((b, layout.size), float("-inf"))
    target = img.new_zeros(b, e)
    valid = torch.zeros(b, dtype=torch.bool, device=img.device)
    if layout.union:  # classification samples: against the union of all classification classes
        rows = layout.classification_row_index(task_ids)
        if rows.numel():
            y = layout.union_labels(task_ids[rows], labels[rows], check=False)
            raw = torch.cat([class_features(k).float() for k in layout.union_tasks])
            txt = F.normalize(raw, dim=-1)
            cols = layout.table("union_columns", img.device)
            logits = logits.index_put((rows[:, None], cols[None, :]), (scale * img[rows] @ txt.T).to(logits.dtype))
            target = target.index_put((rows,), raw[y].to(target.dtype))
            valid = valid.index_put((rows,), torch.ones_like(rows, dtype=torch.bool))
    ids = host_task_ids(task_ids)
    for k in present_tasks(task_ids):
        task = layout.tasks[k]
        if layout.union and task.task_type == "classification":
            continue
        rows = task_rows(task_ids, k)
        y = labels[rows]
        n_cls = layout.sizes[k]
        if task.task_type == "classification":
            raw = class_features(k).float()  # (C, e)
            block = img[rows] @ F.normalize(raw, dim=-1).T
            tgt = raw[y]
        else:
            host_rows = [i for i, t in enumerate(ids) if t == k]
            qs = [batch["questions"][i] for i in host_rows]
            if any(q is None or not str(q).strip() for q in qs):  # name the samples (a host read, on error only)
                require_questions(task, qs, batch["indices"][rows].tolist())
            qs = [str(q) for q in qs]
            raw = pair_features(k, qs).float()  # (n, A, e)
            block = torch.einsum("ne,nae->na", img[rows], F.normalize(raw, dim=-1))
            yc = y.clamp(0, n_cls - 1)
            tgt = raw[torch.arange(len(rows), device=raw.device), yc]
        ok = (y >= 0) & (y < n_cls)
        cols = torch.arange(layout.offsets[k], layout.offsets[k] + n_cls, device=img.device)
        logits = logits.index_put((rows[:, None], cols[None, :]), (scale * block).to(logits.dtype))
        tgt = torch.where(ok[:, None], tgt, torch.zeros_like(tgt)).to(target.dtype)
        target = target.index_put((rows,), tgt)
        valid = valid.index_put((rows,), ok)
    return logits, target, valid


def batch_loss(layout: ClassLayout, batch: dict[str, Any], logits: Tensor) -> Tensor:
    """Mean over counted rows: cross-entropy (classification) / soft cross-entropy (VQA); union
    scoring: a classification sample's cross-entropy is over the union of the classification classes."""
    task_ids, labels = batch["task_ids"], batch["labels"]
    total = logits.new_zeros(())
    count: Tensor | int = 0
    if layout.union:
        rows = layout.classification_row_index(task_ids)
        if rows.numel():
            cols = layout.table("union_columns", logits.device)
            block = logits[rows[:, None], cols[None, :]].float()
            y = layout.union_labels(task_ids[rows], labels[rows], check=False)
            total = total + F.cross_entropy(block, y, reduction="sum")
            count += len(rows)
    for k in present_tasks(task_ids):
        rows = task_rows(task_ids, k)
        block = logits[rows, layout.columns(k)].float()
        task = layout.tasks[k]
        if layout.union and task.task_type == "classification":
            continue
        if task.task_type == "classification":
            total = total + F.cross_entropy(block, labels[rows], reduction="sum")
            count += len(rows)
        else:
            scores = candidate_scores(batch.get("answer_scores"), rows, layout.sizes[k], task)
            loss, ok = soft_target_loss(block, scores)
            total = total + loss.sum()
            count = count + ok.sum()  # a tensor: no host sync
    return total / (count.clamp(min=1) if isinstance(count, Tensor) else max(count, 1))


def make_records(layout: ClassLayout, batch: dict[str, Any], logits: Tensor) -> list[dict[str, Any]]:
    """Prediction records ``{task_id, index, pred, label, correct}`` (VQA: ``correct`` = soft score of ``pred``);
    rows marked in ``batch["unscored"]`` (unreadable evaluation images, see :func:`datasets_vl.collate_vl`) get none."""
    out = []
    scores = batch.get("answer_scores")
    unscored = batch.get("unscored")
    skip = set(unscored.nonzero().flatten().tolist()) if unscored is not None else set()
    for i, (k, idx, y) in enumerate(zip(batch["task_ids"].tolist(), batch["indices"].tolist(), batch["labels"].tolist())):
        if i in skip:
            continue
        pred = int(logits[i, layout.columns(k)].argmax())
        if layout.tasks[k].task_type == "vqa":
            correct: float | bool = float(scores[i, pred]) if scores is not None and pred < scores.shape[1] else float(pred == y)
        else:
            correct = bool(pred == y)
        out.append({"task_id": int(k), "index": int(idx), "pred": pred, "label": int(y), "correct": correct})
    return out


def task_metrics(task_names: Sequence[str], records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``"<task>/accuracy"`` (percent; VQA: VQA accuracy), ``"<task>/n"`` and ``"score"`` = mean over tasks."""
    by_task: dict[int, list[float]] = defaultdict(list)
    for r in records:
        by_task[int(r["task_id"])].append(float(r["correct"]))
    out: dict[str, float] = {}
    accs = []
    for k in sorted(by_task):
        vals = by_task[k]
        acc = 100.0 * sum(vals) / len(vals)
        name = task_names[k] if 0 <= k < len(task_names) else f"task{k}"
        out[f"{name}/accuracy"] = acc
        out[f"{name}/n"] = float(len(vals))
        accs.append(acc)
    out["score"] = sum(accs) / len(accs) if accs else 0.0
    return out
