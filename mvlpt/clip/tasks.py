"""What the CLIP head knows about a task: its name, type, class names (answers) and template."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from mvlpt.core.errors import ConfigError, DataError


@dataclass
class TaskInfo:
    """One task of a prompted CLIP.

    Attributes:
        name: task name (metric keys are ``"<name>/accuracy"``).
        task_type: ``classification`` or ``vqa``.
        classnames: class names, in label order; for VQA the answer vocabulary (most frequent first).
        template: the hand-written prompt (``{}`` = class name). Used where there is no learned
            text context (VPT, zero-shot). For VQA a template with a ``{question}`` slot (and
            ``{}`` or ``{answer}``) replaces ``CLIPPromptConfig.vqa_template``.
    """

    name: str
    task_type: Literal["classification", "vqa"]
    classnames: list[str] = field(default_factory=list)
    template: str = "a photo of a {}."

    def validate(self) -> None:
        if self.task_type not in ("classification", "vqa"):
            raise ConfigError(f"task {self.name!r}: task_type must be 'classification' or 'vqa', found {self.task_type!r}")
        if not self.classnames:
            what = "answer vocabulary" if self.task_type == "vqa" else "class list"
            raise DataError(f"task {self.name!r}: the {what} is empty")
        if self.task_type == "classification" and "{}" not in self.template:
            raise ConfigError(f"task {self.name!r}: template {self.template!r} has no '{{}}' slot for the class name")

    @classmethod
    def from_vltask(cls, task: Any) -> "TaskInfo":
        """From a ``datasets_vl.VLTask`` (its first template is the single template)."""
        return cls(name=task.name, task_type=task.task_type, classnames=list(task.classnames),
                   template=task.templates[0] if task.templates else "a photo of a {}.")

    def num_candidates(self, vqa_max_answers: int = 0) -> int:
        """Classes scored for this task: all classes, or the first ``vqa_max_answers`` VQA answers."""
        n = len(self.classnames)
        return min(n, vqa_max_answers) if self.task_type == "vqa" and vqa_max_answers > 0 else n

    def check_dataset(self, dataset: Any, split: str = "") -> None:
        """Refuse a dataset whose class list (``dataset.classnames``) or type differs from this task's."""
        where = f"{self.name}{'/' + split if split else ''}"
        dtype = getattr(dataset, "task_type", self.task_type)
        if dtype != self.task_type:
            raise DataError(f"task {where}: the model expects a {self.task_type} task but the dataset is {dtype}")
        names = getattr(dataset, "classnames", None)
        if names is None:
            return
        names = list(names)
        if names != list(self.classnames):
            diff = next((i for i, (a, b) in enumerate(zip(names, self.classnames)) if a != b), min(len(names), len(self.classnames)))
            raise DataError(
                f"task {where}: the dataset's class list does not match the model's: expected {len(self.classnames)} "
                f"classes, found {len(names)}; first difference at index {diff}: expected "
                f"{self.classnames[diff] if diff < len(self.classnames) else '<none>'!r}, found "
                f"{names[diff] if diff < len(names) else '<none>'!r}")


def check_tasks(tasks: Sequence[TaskInfo]) -> list[TaskInfo]:
    """Validate a task list (non-empty, unique names, each task valid)."""
    tasks = list(tasks)
    if not tasks:
        raise ConfigError("a CLIP task model needs at least one task")
    for t in tasks:
        if not isinstance(t, TaskInfo):
            raise ConfigError(f"tasks must be TaskInfo objects, found {type(t).__name__}")
        t.validate()
    names = [t.name for t in tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"duplicate task names {dup}: task names must be unique")
    return tasks
