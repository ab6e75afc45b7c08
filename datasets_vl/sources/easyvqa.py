"""The ``easy-vqa`` package (64x64 images of one coloured shape; 13 answers) as a VQA task, and as
two derived classification tasks, ``easy_vqa_shape`` and ``easy_vqa_color``.

easy-vqa stores no per-image metadata, so the derived labels are read off the questions: an
open question's answer ("what color is the triangle?" → blue) and the words in it, and yes/no
questions ("is there a red shape?" → no). An image whose attribute stays ambiguous (about 4% for shape,
7% for colour) is left out of the derived task; the count is in ``task.meta["dropped"]``."""

from __future__ import annotations

import re
from pathlib import Path

from ..dataset import VLDataset, VLTask
from ..errors import DataError, DatasetNotFoundError
from ..spec import DatasetSpec
from .vqav2 import build_vqa_task

SHAPES = ["circle", "rectangle", "triangle"]
COLORS = ["black", "blue", "brown", "gray", "green", "red", "teal", "yellow"]
_WORD = re.compile(r"[a-z]+")


def _easy_vqa():
    try:
        import easy_vqa
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise DatasetNotFoundError("easy_vqa: the 'easy-vqa' package is not installed; run `pip install easy-vqa`") from e
    return easy_vqa


def _read(split: str) -> tuple[list[str], list[str], list[int], dict[int, str]]:
    ev = _easy_vqa()
    qs, ans, ids = getattr(ev, f"get_{split}_questions")()
    paths = getattr(ev, f"get_{split}_image_paths")()
    return qs, ans, ids, paths


def load_easy_vqa(spec: DatasetSpec, ddir: Path | None = None, hint: str = "") -> VLTask:
    """VQA task: one sample per question, exactly one (machine) answer with score 1.0; vocabulary
    = ``easy_vqa.get_answers()`` in the package's order (13 answers)."""
    vocab = [a.strip() for a in _easy_vqa().get_answers()]
    rows = {}
    for ours, split in (("train", "train"), ("test", "test")):
        qs, ans, ids, paths = _read(split)
        rows[ours] = [{"path": paths[i], "question": q, "scores": {a: 1.0}} for q, a, i in zip(qs, ans, ids)]
    return build_vqa_task(spec, vocab, rows, {"source": "easy_vqa"})


def image_attributes(questions: list[str], answers: list[str], image_ids: list[int]) -> dict[int, dict[str, str]]:
    """Per image id, the ``shape`` and ``color`` that the questions pin down (absent if ambiguous)."""
    present: dict[int, dict[str, set[str]]] = {}
    absent: dict[int, dict[str, set[str]]] = {}
    for q, a, im in zip(questions, answers, image_ids):
        words = _WORD.findall(q.lower())
        both = any(w in SHAPES for w in words) and any(w in COLORS for w in words)
        for attr, vocab in (("shape", SHAPES), ("color", COLORS)):
            named = [w for w in words if w in vocab]
            if a in ("yes", "no"):
                negated = "not" in words or "no" in words  # "is there not a X?", "is no X present?"
                positive = negated == (a == "no")
                if both and not positive:
                    continue  # "no red circle" does not say which of the two is absent
                for w in named:
                    (present if positive else absent).setdefault(im, {}).setdefault(attr, set()).add(w)
            else:
                got = present.setdefault(im, {}).setdefault(attr, set())
                if a in vocab:
                    got.add(a)
                got.update(named)
    out: dict[int, dict[str, str]] = {}
    for im in set(image_ids):
        attrs = {}
        for attr, vocab in (("shape", SHAPES), ("color", COLORS)):
            pos = present.get(im, {}).get(attr, set())
            neg = absent.get(im, {}).get(attr, set())
            cand = pos if pos else set(vocab) - neg
            if len(cand) == 1 and not (cand & neg):
                attrs[attr] = next(iter(cand))
        out[im] = attrs
    return out


def load_easy_vqa_attribute(spec: DatasetSpec, attr: str) -> VLTask:
    """Classification task on images: ``attr`` is ``"shape"`` or ``"color"``."""
    classnames = SHAPES if attr == "shape" else COLORS
    idx = {c: i for i, c in enumerate(classnames)}
    splits, dropped = {}, {}
    for split in ("train", "test"):
        qs, ans, ids, paths = _read(split)
        attrs = image_attributes(qs, ans, ids)
        keep = sorted(im for im, a in attrs.items() if attr in a)
        dropped[split] = len(attrs) - len(keep)
        if not keep:
            raise DataError(f"{spec.name}: no image of the {split} split has a known {attr}")
        splits[split] = VLDataset(f"{spec.name}/{split}", "classification", classnames, [paths[i] for i in keep],
                                  [idx[attrs[i][attr]] for i in keep], max_unreadable_fraction=spec.max_unreadable_fraction)
    return VLTask(spec.name, "classification", list(classnames), splits, [], [],
                  meta={"source": f"easy_vqa_{attr}", "dropped": dropped})
