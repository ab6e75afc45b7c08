"""Consistency checks on class lists and labels, with errors that name the class."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from .errors import DataError


def check_classnames(dataset: str, classnames: Sequence[str]) -> list[str]:
    """Refuse an empty list, empty names and duplicates (after trimming, case-insensitive)."""
    names = [str(c) for c in classnames]
    if not names:
        raise DataError(f"{dataset}: the class list is empty")
    for i, c in enumerate(names):
        if not c.strip():
            raise DataError(f"{dataset}: class {i} has an empty name")
    dup = [c for c, n in Counter(c.strip().lower() for c in names).items() if n > 1]
    if dup:
        raise DataError(f"{dataset}: duplicate class name(s) {sorted(dup)}; class names must be unique "
                        "(prompts would be identical); rename or merge those classes")
    return names


def check_labels(dataset: str, classnames: Sequence[str], splits: Mapping[str, Sequence[int]],
                 nonempty: Sequence[str] = ("train",), allow_missing: bool = False) -> None:
    """Every label is a valid class index; every class has examples in the ``nonempty`` splits."""
    n = len(classnames)
    for split, labels in splits.items():
        bad = sorted({int(y) for y in labels if not 0 <= int(y) < n})
        if bad:
            raise DataError(f"{dataset}/{split}: label(s) {bad[:10]} outside the class list of {n} classes "
                            f"({', '.join(classnames[:5])}{', ...' if n > 5 else ''})")
    if allow_missing:
        return
    for split in nonempty:
        if split not in splits:
            continue
        counts = Counter(int(y) for y in splits[split])
        empty = [classnames[c] for c in range(n) if counts[c] == 0]
        if empty:
            raise DataError(f"{dataset}/{split}: class(es) {empty[:10]} have no examples; remove them from the "
                            "class list or add images")


def safe_join(root: Path, rel: str, dataset: str) -> Path:
    """``root / rel``, refusing absolute paths and paths that escape ``root`` (``..``, symlinks)."""
    p = Path(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")):
        raise DataError(f"{dataset}: path {rel!r} in the split file is absolute; paths must be relative to {root}")
    full = (root / p).resolve()
    base = root.resolve()
    if full != base and base not in full.parents:
        raise DataError(f"{dataset}: path {rel!r} in the split file points outside the image root {root}")
    return root / p
