"""Few-shot splits (CoOp protocol), JSON manifests and base/new class splits.

Sampling is deterministic across machines and Python/numpy versions: for each class, its
sorted row indices are shuffled by ``random.Random("mvlpt-fewshot:<seed>:<class>")`` (string
seeds are hashed with SHA-512 by Python, independent of ``PYTHONHASHSEED``); the first K rows
are the shots and the next ``min(K, 4)`` the validation rows. For VQA, the "class" of a
question is its best answer (``label``), so K examples per answer; label -1 rows are never drawn."""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mvlpt.core.sampling import IfTooFew, check_if_too_few

from .dataset import VLDataset, VLSubset, VLTask
from .errors import DataError

MANIFEST_FORMAT = "mvlpt-fewshot/1"


@dataclass
class FewShotSplit:
    """Row indices (into the source train split) of the K-shot train and validation sets."""

    k: int
    seed: int
    train: list[int]
    val: list[int]
    val_k: int
    meta: dict[str, Any] = field(default_factory=dict)


def sample_few_shot(
    labels: Sequence[int],
    k: int,
    seed: int,
    *,
    val_k: int | None = None,
    classnames: Sequence[str] | None = None,
    num_classes: int | None = None,
    if_too_few: IfTooFew = "error",
    skip_empty: bool = False,
    name: str = "dataset",
    option: str = "if_too_few='largest'",
) -> FewShotSplit:
    """K shots per class and ``val_k`` (default ``min(k, 4)``) validation rows per class from the rest.

    A class with fewer than K rows raises :class:`DataError` naming the smallest class and its
    count (``if_too_few="error"``); ``"largest"`` lowers K to that count for every class (the
    split's ``k``; ``meta["k_requested"]`` keeps the K asked for); ``"all"`` gives the short
    classes all their rows (validation then takes what is left, maybe none). A class with no rows
    at all is an error unless ``skip_empty`` (the VQA default). ``name`` and ``option`` (how the
    caller spells ``"largest"``) go into the error message."""
    if k < 1:
        raise DataError(f"few-shot K must be >= 1, found {k}")
    check_if_too_few(if_too_few, "if_too_few")
    k_requested = k
    if num_classes is not None:
        n_cls = num_classes
    else:
        n_cls = len(classnames) if classnames is not None else max(labels, default=-1) + 1
    by_class: dict[int, list[int]] = {c: [] for c in range(n_cls)}
    for i, y in enumerate(labels):
        y = int(y)
        if y < 0:
            continue
        if y >= n_cls:
            raise DataError(f"row {i} has label {y}, outside the {n_cls} classes")
        by_class[y].append(i)

    def cname(c: int) -> str:
        return f"{c} ({classnames[c]!r})" if classnames is not None else str(c)

    sizes = {c: len(v) for c, v in by_class.items() if v or not skip_empty}
    smallest = min(sizes, key=lambda c: (sizes[c], c), default=None)
    if smallest is not None and sizes[smallest] < k and sizes[smallest] > 0 and if_too_few != "all":
        n_min = sizes[smallest]
        if if_too_few == "error":
            n_short = sum(1 for v in sizes.values() if v < k)
            raise DataError(f"{name}: K={k} shots per class, but its smallest class {cname(smallest)} has only "
                            f"{n_min} training example(s) ({n_short} of {len(sizes)} classes have fewer than {k}); "
                            f"use K <= {n_min}, or {option} to train with K={n_min}, the largest K "
                            "every class has")
        k = n_min
    val_k = min(k, 4) if val_k is None else val_k
    if val_k < 0:
        raise DataError(f"val_k must be >= 0, found {val_k}")
    train: list[int] = []
    val: list[int] = []
    short: list[str] = []
    for c in range(n_cls):
        rows = by_class[c]
        if not rows:
            if skip_empty:
                continue
            raise DataError(f"class {cname(c)} has no training examples; cannot draw {k} shots")
        if len(rows) < k:
            short.append(cname(c))
        rows = sorted(rows)
        random.Random(f"mvlpt-fewshot:{seed}:{c}").shuffle(rows)
        n_train = min(k, len(rows))
        train += rows[:n_train]
        val += rows[n_train:n_train + val_k]
    meta: dict[str, Any] = {"classes_short": short}
    if k != k_requested:
        meta["k_requested"] = k_requested
    return FewShotSplit(k, seed, sorted(train), sorted(val), val_k, meta)


def save_manifest(path: str | Path, split: FewShotSplit, labels: Sequence[int] | None = None,
                  dataset: str = "", classnames: Sequence[str] | None = None) -> Path:
    """Write the split as JSON (with the labels of the chosen rows, for auditing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": MANIFEST_FORMAT, "dataset": dataset, **asdict(split)}
    if classnames is not None:
        data["classnames"] = list(classnames)
    if labels is not None:
        data["train_labels"] = [int(labels[i]) for i in split.train]
        data["val_labels"] = [int(labels[i]) for i in split.val]
    path.write_text(json.dumps(data, indent=1))
    return path


def load_manifest(path: str | Path, labels: Sequence[int] | None = None) -> FewShotSplit:
    """Read a manifest; with ``labels`` given, check that the stored rows still have the stored labels."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read few-shot manifest {path}: {e}") from e
    if data.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{path}: not a few-shot manifest (format {data.get('format')!r}, expected {MANIFEST_FORMAT!r})")
    split = FewShotSplit(int(data["k"]), int(data["seed"]), list(data["train"]), list(data["val"]),
                         int(data["val_k"]), dict(data.get("meta", {})))
    if labels is not None:
        for part in ("train", "val"):
            stored = data.get(f"{part}_labels")
            rows = getattr(split, part)
            if any(not 0 <= i < len(labels) for i in rows):
                raise DataError(f"{path}: {part} rows are out of range for a dataset of {len(labels)} rows")
            if stored is not None and [int(labels[i]) for i in rows] != stored:
                raise DataError(f"{path}: the {part} rows no longer have the labels recorded in the manifest; "
                                "the dataset changed since the manifest was written")
    return split


def apply_few_shot(task: VLTask, k: int, seed: int, manifest: str | Path | None = None,
                   if_too_few: IfTooFew = "error", val_k: int | None = None,
                   option: str = "if_too_few='largest'") -> VLTask:
    """A copy of ``task`` whose train/val splits are the K-shot subsets of its train split.

    With ``manifest`` given: re-use it if the file exists (checked against the labels), else sample
    and write it there. Test split unchanged. ``meta["few_shot"]`` has the K used (``k``; lower than
    the ``k_requested`` under ``if_too_few="largest"``), the seed, the manifest and the split."""
    full = task.splits["train"]
    labels = full.labels
    fresh = sample_few_shot(labels, k, seed, val_k=val_k, classnames=task.classnames,
                            if_too_few=if_too_few, skip_empty=task.task_type == "vqa", name=task.name, option=option)
    if manifest is not None and Path(manifest).is_file():
        split = load_manifest(manifest, labels)
        if split.k != fresh.k or split.seed != seed:
            raise DataError(f"{manifest}: manifest is for K={split.k}, seed={split.seed}, not K={fresh.k}, seed={seed}")
        if split.val_k != fresh.val_k:
            raise DataError(f"{manifest}: manifest holds {split.val_k} validation rows per class, this run asks for "
                            f"{fresh.val_k}; use a fresh run directory")
    else:
        split = fresh
        if manifest is not None:
            save_manifest(manifest, split, labels, task.name, task.classnames)
    splits = dict(task.splits)
    splits["train"] = take_rows(full, split.train)
    if split.val:
        splits["val"] = take_rows(full, split.val, task.transform)
    else:
        splits.pop("val", None)
    meta = dict(task.meta, few_shot={"k": split.k, "k_requested": k, "seed": seed,
                                     "manifest": str(manifest) if manifest else None, "split": split,
                                     "pool_labels": list(labels)})
    return VLTask(task.name, task.task_type, task.classnames, splits, task.templates, task.ensemble_templates,
                  task.transform, task.train_transform, meta)


def take_rows(ds: VLDataset | VLSubset, rows: Sequence[int], transform: Any = None) -> VLSubset:
    """Rows ``rows`` of ``ds`` as a :class:`VLSubset` (flattened onto the underlying dataset);
    with ``transform`` given, the subset uses it instead of the dataset's."""
    if isinstance(ds, VLSubset):
        parent = ds.parent.with_transform(transform) if transform is not None else ds.parent
        return VLSubset(parent, [ds.indices[i] for i in rows], ds.label_map, ds.classnames)
    return VLSubset(ds.with_transform(transform) if transform is not None else ds, rows)


def base_new_split(num_classes: int) -> tuple[list[int], list[int]]:
    """CoOp base-to-new: the first ``ceil(C/2)`` class indices (of the sorted class list) are base."""
    m = math.ceil(num_classes / 2)
    return list(range(m)), list(range(m, num_classes))


def subset_classes(ds: VLDataset | VLSubset, class_ids: Sequence[int]) -> VLSubset:
    """Rows of ``ds`` whose class is in ``class_ids``, relabelled 0..len-1 in that order."""
    if ds.task_type != "classification":
        raise DataError(f"{ds.name}: base/new class splits are for classification tasks")
    keep = {c: i for i, c in enumerate(class_ids)}
    names = [ds.classnames[c] for c in class_ids]
    if isinstance(ds, VLSubset):
        rows = [ds.indices[i] for i, y in enumerate(ds.labels) if y in keep]
        cur = ds.label_map if ds.label_map is not None else {c: c for c in range(len(ds.parent.classnames))}
        lmap = {pc: keep[cc] for pc, cc in cur.items() if cc in keep}
        return VLSubset(ds.parent, rows, lmap, names)
    rows = [i for i, y in enumerate(ds.labels) if y in keep]
    return VLSubset(ds, rows, keep, names)


def base_new_tasks(task: VLTask) -> tuple[VLTask, VLTask]:
    """``(base, new)`` tasks: every split restricted to the base / new classes and relabelled."""
    base, new = base_new_split(task.num_classes)
    out = []
    for part, ids in (("base", base), ("new", new)):
        splits = {k: subset_classes(v, ids) for k, v in task.splits.items()}
        out.append(VLTask(f"{task.name}_{part}", task.task_type, [task.classnames[c] for c in ids], splits,
                          task.templates, task.ensemble_templates, task.transform, task.train_transform,
                          dict(task.meta, base_new=part)))
    return out[0], out[1]
