"""Lazy per-task datasets (images decoded in ``__getitem__``) and the :class:`VLTask` bundle."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

from PIL import Image
from torch.utils.data import Dataset

from .errors import DataError
from .robust import UnreadableImage, UnreadableTracker, decode_image, fetch_robust

TaskType = Literal["classification", "vqa"]
Transform = Callable[[Any], Any]
OnUnreadable = Literal["replace", "skip"]
_ACTIONS = {"replace": "replaced by the next readable one", "skip": "skipped (not scored, not counted in n)"}


#: attribute a transform carries when it is a fixed function of the image (no random crop or flip)
DETERMINISTIC_ATTR = "mvlpt_deterministic"


def mark_deterministic(transform: Transform) -> Transform:
    """Mark ``transform`` as a fixed function of its input, so datasets may keep its outputs
    (:class:`~datasets_vl.dataset.VLDataset`); returns it."""
    setattr(transform, DETERMINISTIC_ATTR, True)
    return transform


def is_deterministic(transform: Transform | None) -> bool:
    """Whether ``transform`` was marked by :func:`mark_deterministic`."""
    return bool(getattr(transform, DETERMINISTIC_ATTR, False))


#: the most bytes of transformed images one dataset keeps (:meth:`VLDataset.load`)
MEMO_BYTES = 256 * 2**20


class _ImageMemo:
    """Transformed images by index, up to :data:`MEMO_BYTES`; shared by the copies of a dataset that
    use the same transform (:meth:`VLDataset.for_eval`), so the byte budget is one budget."""

    def __init__(self) -> None:
        self.images: dict[int, Any] = {}
        self.nbytes = 0

    def get(self, i: int) -> Any | None:
        return self.images.get(i)

    def put(self, i: int, image: Any) -> None:
        size = getattr(image, "nbytes", None)
        if size is not None and self.nbytes + size <= MEMO_BYTES:
            self.images[i] = image
            self.nbytes += size


def _memo_for(transform: Transform | None) -> _ImageMemo | None:
    return _ImageMemo() if is_deterministic(transform) else None


def _tracker(name: str, max_fraction: float, size: int, mode: str) -> UnreadableTracker:
    return UnreadableTracker(name, max_fraction, size=size, action=_ACTIONS[mode])


class VLDataset(Dataset):
    """One split of one task.

    ``image_refs[i]`` is anything :func:`~datasets_vl.robust.decode_image` opens (a path, bytes,
    an HF ``{"bytes", "path"}`` dict, a PIL image); it is decoded only in ``__getitem__``.
    ``labels`` are class indices (VQA: index of the best-scoring answer, or -1), cheap to read
    for few-shot sampling. A sample is ``{"image", "label", "question", "answer_scores"}``
    (VQA samples also carry ``"num_answers"``); see :mod:`datasets_vl.robust` for unreadable images:
    ``on_unreadable="replace"`` (training) substitutes the next readable image, ``"skip"``
    (evaluation, :meth:`for_eval`) returns a placeholder that :func:`collate_vl` leaves unscored.
    """

    def __init__(
        self,
        name: str,
        task_type: TaskType,
        classnames: Sequence[str],
        image_refs: Sequence[Any],
        labels: Sequence[int],
        *,
        questions: Sequence[str] | None = None,
        answer_scores: Sequence[dict[int, float]] | None = None,
        transform: Transform | None = None,
        ref_names: Sequence[str] | Callable[[int], str] | None = None,
        max_unreadable_fraction: float = 0.01,
    ) -> None:
        n = len(image_refs)
        if len(labels) != n:
            raise DataError(f"{name}: {n} images but {len(labels)} labels")
        for what, seq in (("questions", questions), ("answer_scores", answer_scores)):
            if seq is not None and len(seq) != n:
                raise DataError(f"{name}: {n} images but {len(seq)} {what}")
        self.name = name
        self.task_type = task_type
        self.classnames = list(classnames)
        self.image_refs = image_refs
        self.labels = [int(x) for x in labels]
        self.questions = list(questions) if questions is not None else None
        self.answer_scores = list(answer_scores) if answer_scores is not None else None
        self.transform = transform
        self._ref_names = ref_names
        self.on_unreadable: OnUnreadable = "replace"
        self.unreadable = _tracker(name, max_unreadable_fraction, n, "replace")
        self._memo = _memo_for(transform)

    def __len__(self) -> int:
        return len(self.labels)

    def file_name(self, i: int) -> str:
        """A readable name of image ``i`` for error reports."""
        if callable(self._ref_names):
            return self._ref_names(i)
        if self._ref_names is not None:
            return str(self._ref_names[i])
        ref = self.image_refs[i]
        if isinstance(ref, str):
            return ref
        if isinstance(ref, dict) and ref.get("path"):
            return str(ref["path"])
        return f"{self.name}[{i}]"

    def load(self, i: int) -> dict[str, Any]:
        """Sample ``i`` without replacement; raises :class:`UnreadableImage` if the image cannot be decoded.
        With a deterministic transform (:func:`mark_deterministic`) each image is decoded and transformed
        once and kept (up to :data:`MEMO_BYTES` per dataset): a few-shot run reads its few images at
        every step."""
        kept = self._memo.get(i) if self._memo is not None else None
        if kept is not None:
            return self._sample(i, kept, transformed=True)
        try:
            img = decode_image(self.image_refs[i])
        except Exception as e:  # any decoding failure of this one file
            raise UnreadableImage(str(e)) from e
        sample = self._sample(i, img)
        if self._memo is not None:
            self._memo.put(i, sample["image"])
        return sample

    def placeholder(self, i: int) -> dict[str, Any]:
        """Sample ``i`` with a blank image in place of its unreadable one (shape as the transform makes it)."""
        return self._sample(i, Image.new("RGB", (8, 8)))

    def _sample(self, i: int, img: Any, transformed: bool = False) -> dict[str, Any]:
        sample: dict[str, Any] = {
            "image": img if transformed or self.transform is None else self.transform(img),
            "label": self.labels[i],
            "question": self.questions[i] if self.questions is not None else None,
            "answer_scores": dict(self.answer_scores[i]) if self.answer_scores is not None else None,
        }
        if self.task_type == "vqa":
            sample["num_answers"] = len(self.classnames)
        return sample

    def __getitem__(self, i: int) -> dict[str, Any]:
        ph = self.placeholder if self.on_unreadable == "skip" else None
        return fetch_robust(i, range(len(self)), self.load, self.file_name, self.unreadable, ph)

    def report_unreadable(self, reset: bool = True) -> dict[str, Any]:
        """End-of-epoch report of skipped images; raises DataError above ``max_unreadable_fraction``."""
        return self.unreadable.report(len(self), reset=reset)

    def with_transform(self, transform: Transform | None) -> "VLDataset":
        """A shallow copy using ``transform`` (and its own unreadable counter)."""
        out = copy.copy(self)
        out.transform = transform
        out.unreadable = _tracker(self.name, self.unreadable.max_fraction, len(self), self.on_unreadable)
        out._memo = _memo_for(transform)
        return out

    def for_eval(self) -> "VLDataset":
        """A shallow copy that never replaces an unreadable image (``on_unreadable="skip"``)."""
        out = copy.copy(self)
        out.on_unreadable = "skip"
        out.unreadable = _tracker(self.name, self.unreadable.max_fraction, len(self), "skip")
        return out

    def class_counts(self) -> list[int]:
        counts = [0] * len(self.classnames)
        for y in self.labels:
            if 0 <= y < len(counts):
                counts[y] += 1
        return counts


class VLSubset(Dataset):
    """Rows ``indices`` of a :class:`VLDataset`, optionally relabelled (``label_map``: old → new
    class index, with ``classnames`` the new class list). Keeps ``.labels``; an unreadable image
    is replaced by the next readable row *of the subset*."""

    def __init__(
        self,
        parent: VLDataset,
        indices: Sequence[int],
        label_map: dict[int, int] | None = None,
        classnames: Sequence[str] | None = None,
    ) -> None:
        self.parent = parent
        self.indices = [int(i) for i in indices]
        for i in self.indices:
            if not 0 <= i < len(parent):
                raise DataError(f"{parent.name}: subset index {i} out of range (size {len(parent)})")
        self.label_map = label_map
        self.name = parent.name
        self.task_type = parent.task_type
        self.classnames = list(classnames) if classnames is not None else parent.classnames
        lab = [parent.labels[i] for i in self.indices]
        self.labels = [label_map[y] for y in lab] if label_map is not None else lab
        self.questions = [parent.questions[i] for i in self.indices] if parent.questions is not None else None
        self.on_unreadable: OnUnreadable = parent.on_unreadable
        self.unreadable = _tracker(parent.name, parent.unreadable.max_fraction, len(self.indices), self.on_unreadable)

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, j: int) -> dict[str, Any]:
        sample = self.parent.load(j)
        if self.label_map is not None:
            sample["label"] = self.label_map[sample["label"]]
        return sample

    def _placeholder(self, j: int) -> dict[str, Any]:
        sample = self.parent.placeholder(j)
        if self.label_map is not None:
            sample["label"] = self.label_map[sample["label"]]
        return sample

    def __getitem__(self, i: int) -> dict[str, Any]:
        ph = self._placeholder if self.on_unreadable == "skip" else None
        return fetch_robust(i, self.indices, self._load, self.parent.file_name, self.unreadable, ph)

    def report_unreadable(self, reset: bool = True) -> dict[str, Any]:
        return self.unreadable.report(len(self), reset=reset)

    def with_transform(self, transform: Transform | None) -> "VLSubset":
        return VLSubset(self.parent.with_transform(transform), self.indices, self.label_map, self.classnames)

    def for_eval(self) -> "VLSubset":
        """A copy that never replaces an unreadable image (``on_unreadable="skip"``)."""
        return VLSubset(self.parent.for_eval(), self.indices, self.label_map, self.classnames)


@dataclass
class VLTask:
    """A loaded task: splits (``"train"``, optional ``"val"``, ``"test"``), class names (the answer
    vocabulary for VQA), prompt templates (``templates[0]`` is the default single template) and
    the transforms applied (train split: ``train_transform``; others: ``transform``)."""

    name: str
    task_type: TaskType
    classnames: list[str]
    splits: dict[str, VLDataset | VLSubset]
    templates: list[str]
    ensemble_templates: list[str]
    transform: Transform | None = None
    train_transform: Transform | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def report_unreadable(self, reset: bool = True) -> dict[str, dict[str, Any]]:
        """End-of-epoch reports of every split (raises DataError if any split is over the limit)."""
        return {k: ds.report_unreadable(reset=reset) for k, ds in self.splits.items()}
