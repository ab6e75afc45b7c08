"""VQA in the VQAv2 JSON layout: a questions file and an annotations file (10 human answers per
question) per split, over an image root. Images are named by a question's ``"image"`` field
(relative path) when present, else COCO-style ``COCO_<data_subtype>_<image_id:012d>.jpg``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checks import safe_join
from ..dataset import VLDataset, VLTask
from ..errors import DataError, DatasetNotFoundError
from ..spec import DatasetSpec
from ..vqa import best_label, build_vocab, index_scores, normalize_answer, soft_scores

VQAV2_FILES = {
    "train": {"questions": "v2_OpenEnded_mscoco_train2014_questions.json",
              "annotations": "v2_mscoco_train2014_annotations.json", "images": "train2014"},
    "test": {"questions": "v2_OpenEnded_mscoco_val2014_questions.json",
             "annotations": "v2_mscoco_val2014_annotations.json", "images": "val2014"},
}


def _read_json(path: Path, name: str, hint: str) -> Any:
    if not path.is_file():
        raise DatasetNotFoundError(f"{name}: {path} not found. {hint}")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{name}: cannot read {path}: {e}") from e


def _read_split(spec: DatasetSpec, ddir: Path, split: str, files: dict[str, str], hint: str) -> list[dict[str, Any]]:
    qdata = _read_json(ddir / files["questions"], spec.name, hint)
    adata = _read_json(ddir / files["annotations"], spec.name, hint)
    img_root = ddir / files.get("images", ".")
    if not img_root.is_dir():
        raise DatasetNotFoundError(f"{spec.name}/{split}: image root {img_root} not found. {hint}")
    subtype = qdata.get("data_subtype") or Path(files.get("images", "")).name
    if not isinstance(adata, dict) or not isinstance(adata.get("annotations"), list):
        raise DataError(f"{spec.name}/{split}: {files['annotations']} has no 'annotations' list; expected the VQAv2 "
                        "annotations layout {\"annotations\": [{\"question_id\", \"answers\": [...10 answers]}]}")
    anns = {a["question_id"]: a for a in adata["annotations"]}
    rows = []
    for q in qdata.get("questions", []):
        qid = q.get("question_id")
        if qid not in anns:
            raise DataError(f"{spec.name}/{split}: question {qid} has no annotation in {files['annotations']}")
        a = anns[qid]
        humans = [x["answer"] for x in a.get("answers", [])]
        if not humans:
            raise DataError(f"{spec.name}/{split}: question {qid} has no human answers")
        rel = q["image"] if "image" in q else f"COCO_{subtype}_{int(q['image_id']):012d}.jpg"
        rows.append({
            "path": str(safe_join(img_root, rel, spec.name)),
            "question": str(q["question"]),
            "scores": soft_scores(humans),
            "consensus": normalize_answer(a.get("multiple_choice_answer") or max(humans, key=humans.count)),
        })
    if not rows:
        raise DataError(f"{spec.name}/{split}: {files['questions']} has no questions")
    return rows


def load_vqav2(spec: DatasetSpec, ddir: Path, hint: str = "") -> VLTask:
    """Answer vocabulary: ``answer_vocab_file`` (JSON list) if given, else the ``max_answers`` most
    frequent consensus answers of the train split. Samples whose answers are all outside the
    vocabulary keep ``label = -1`` and empty scores (they still count in VQA accuracy)."""
    files = spec.vqa_files or VQAV2_FILES
    if "train" not in files or "test" not in files:
        raise DataError(f"{spec.name}: vqa_files needs 'train' and 'test' entries, found {sorted(files)}")
    rows = {s: _read_split(spec, ddir, s, f, hint) for s, f in files.items()}
    if spec.answer_vocab_file:
        vocab = [normalize_answer(a) for a in _read_json(ddir / spec.answer_vocab_file, spec.name, hint)]
        if len(set(vocab)) != len(vocab):
            raise DataError(f"{spec.name}: {spec.answer_vocab_file} has duplicate answers (after normalisation)")
    else:
        vocab = build_vocab((r["consensus"] for r in rows["train"]), spec.max_answers)
    return build_vqa_task(spec, vocab, rows, {"source": "vqav2"})


def build_vqa_task(spec: DatasetSpec, vocab: list[str], rows: dict[str, list[dict[str, Any]]], meta: dict) -> VLTask:
    """Rows ``{"path"|"image", "question", "scores": {answer: score}}`` per split → VQA :class:`VLTask`."""
    if not vocab:
        raise DataError(f"{spec.name}: the answer vocabulary is empty")
    vidx = {a: i for i, a in enumerate(vocab)}
    splits = {}
    for s, rs in rows.items():
        scores = [index_scores(r["scores"], vidx) for r in rs]
        splits[s] = VLDataset(f"{spec.name}/{s}", "vqa", vocab, [r.get("path", r.get("image")) for r in rs],
                              [best_label(x) for x in scores], questions=[r["question"] for r in rs],
                              answer_scores=scores, max_unreadable_fraction=spec.max_unreadable_fraction)
    meta = dict(meta, coverage={s: sum(1 for y in d.labels if y >= 0) / len(d) for s, d in splits.items()})
    return VLTask(spec.name, "vqa", vocab, splits, [], [], meta=meta)
