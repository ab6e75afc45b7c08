"""Helpers for datasets_vl tests: tiny image trees, split files and VQA JSON in tmp dirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from datasets_vl import build_transforms

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
COLORS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "fish": (30, 30, 200), "bird": (200, 200, 30)}


def write_image(path: Path, color=(128, 128, 128), mode: str = "RGB", size: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (size, size), color)
    img = img.convert(mode)
    img.save(path)
    return path


def make_tree(root: Path, counts: dict[str, int], ext: str = ".png") -> Path:
    """``root/<class>/<class>_<i><ext>`` with ``counts[class]`` images each."""
    for c, n in counts.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(root / c / f"{c}_{i:03d}{ext}", COLORS.get(c, (90, 90, 90)))
    return root


def make_vqa(root: Path, split: str, items: list[tuple[str, str, list[str]]], subtype: str | None = None) -> dict[str, str]:
    """VQAv2-layout files for ``items`` = [(image file, question, 10 human answers)]; returns vqa_files entry."""
    img_dir = root / f"{split}_images"
    questions, annotations = [], []
    for qid, (img, q, answers) in enumerate(items):
        if not (img_dir / img).exists():
            write_image(img_dir / img, (qid * 20 % 255, 100, 100))
        questions.append({"question_id": qid, "image_id": qid, "question": q, "image": img})
        counts = {a: answers.count(a) for a in answers}
        annotations.append({"question_id": qid, "image_id": qid,
                            "multiple_choice_answer": max(counts, key=lambda a: (counts[a], a)),
                            "answers": [{"answer": a, "answer_id": j + 1} for j, a in enumerate(answers)]})
    (root / f"{split}_q.json").write_text(json.dumps({"data_subtype": split, "questions": questions}))
    (root / f"{split}_a.json").write_text(json.dumps({"annotations": annotations}))
    return {"questions": f"{split}_q.json", "annotations": f"{split}_a.json", "images": f"{split}_images"}
