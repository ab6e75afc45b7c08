"""CoOp-style split files: ``split_zhou_<Name>.json`` = ``{"train"|"val"|"test": [[rel_path, label, classname], ...]}``
over an image root (plus FGVC-Aircraft's ``images_variant_<split>.txt`` lists, which CoOp reads directly)."""

from __future__ import annotations

import json
from pathlib import Path

from ..checks import check_classnames, check_labels, safe_join
from ..dataset import VLDataset, VLTask
from ..errors import DataError, DatasetNotFoundError
from ..spec import DatasetSpec


def load_coop_split(spec: DatasetSpec, ddir: Path, hint: str = "", rename: dict[str, str] | None = None) -> VLTask:
    if not spec.split_file:
        raise DataError(f"{spec.name}: source 'coop_split' needs split_file (e.g. split_zhou_OxfordPets.json)")
    split_path = ddir / spec.split_file
    image_root = ddir / spec.image_dir if spec.image_dir else ddir
    for p, what in ((split_path, "split file"), (image_root, "image root")):
        if not p.exists():
            raise DatasetNotFoundError(f"{spec.name}: {what} {p} not found. {hint}")
    try:
        data = json.loads(split_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{spec.name}: cannot read split file {split_path}: {e}") from e
    if not isinstance(data, dict) or "train" not in data or "test" not in data:
        raise DataError(f"{spec.name}: {split_path} must be a JSON object with 'train' and 'test' (and optionally 'val') lists")
    names: dict[int, str] = {}
    items: dict[str, list[tuple[Path, int]]] = {}
    for split in ("train", "val", "test"):
        if split not in data:
            continue
        rows = []
        for row in data[split]:
            if not (isinstance(row, (list, tuple)) and len(row) == 3):
                raise DataError(f"{spec.name}/{split}: row {row!r} is not [relative_path, label, classname]")
            rel, label, cname = row
            label = int(label)
            if names.setdefault(label, cname) != cname:
                raise DataError(f"{spec.name}/{split}: label {label} is named both {names[label]!r} and {cname!r}")
            rows.append((safe_join(image_root, str(rel), spec.name), label))
        items[split] = rows
    return _build(spec, names, items, rename, {"source": "coop_split", "split_file": str(split_path)})


def load_fgvc_lists(spec: DatasetSpec, ddir: Path, hint: str = "") -> VLTask:
    """FGVC-Aircraft: ``variants.txt`` (class order) and ``images_variant_{train,val,test}.txt``."""
    image_root = ddir / (spec.image_dir or "images")
    variants_file = ddir / "variants.txt"
    if not variants_file.is_file() or not image_root.is_dir():
        raise DatasetNotFoundError(f"{spec.name}: {variants_file} or {image_root} not found. {hint}")
    classnames = [v.strip() for v in variants_file.read_text().splitlines() if v.strip()]
    idx = {c: i for i, c in enumerate(classnames)}
    items: dict[str, list[tuple[Path, int]]] = {}
    for split in ("train", "val", "test"):
        f = ddir / f"images_variant_{split}.txt"
        if not f.is_file():
            continue
        rows = []
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            img_id, _, variant = line.strip().partition(" ")
            if variant not in idx:
                raise DataError(f"{spec.name}/{split}: variant {variant!r} is not in {variants_file.name}")
            rows.append((safe_join(image_root, f"{img_id}.jpg", spec.name), idx[variant]))
        items[split] = rows
    return _build(spec, dict(enumerate(classnames)), items, None, {"source": "fgvc_lists"})


def _build(spec: DatasetSpec, names: dict[int, str], items: dict[str, list[tuple[Path, int]]],
           rename: dict[str, str] | None, meta: dict) -> VLTask:
    if "train" not in items or "test" not in items:
        raise DataError(f"{spec.name}: need train and test lists, found {sorted(items)}")
    n = max(names) + 1 if names else 0
    missing = [i for i in range(n) if i not in names]
    if missing:
        raise DataError(f"{spec.name}: label(s) {missing[:10]} have no examples or class name (labels must be 0..{n - 1})")
    classnames = [names[i] for i in range(n)]
    if rename:
        classnames = [rename.get(c, c) for c in classnames]
    if spec.classnames is not None:
        if len(spec.classnames) != n:
            raise DataError(f"{spec.name}: classnames has {len(spec.classnames)} names, the split file has {n} classes")
        classnames = list(spec.classnames)
    classnames = check_classnames(spec.name, classnames)
    check_labels(spec.name, classnames, {k: [y for _, y in v] for k, v in items.items()})
    splits = {
        k: VLDataset(f"{spec.name}/{k}", "classification", classnames, [str(p) for p, _ in v], [y for _, y in v],
                     max_unreadable_fraction=spec.max_unreadable_fraction)
        for k, v in items.items()
    }
    return VLTask(spec.name, "classification", classnames, splits, [], [], meta=meta)
