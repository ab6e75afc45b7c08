"""A plain image-folder tree: ``root/<class>/*.jpg`` or ``root/{train,val,test}/<class>/*.jpg``."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from ..checks import check_classnames, check_labels
from ..dataset import VLDataset, VLTask
from ..errors import DataError, DatasetNotFoundError
from ..spec import DatasetSpec

SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


def _class_dirs(d: Path) -> list[str]:
    return sorted(e.name for e in d.iterdir() if e.is_dir() and not e.name.startswith("."))


def _read_class_map(ddir: Path) -> dict[str, str]:
    """Optional ``classnames.txt``: lines ``<folder> <readable name>`` (CoOp's ImageNet format)."""
    f = ddir / "classnames.txt"
    if not f.is_file():
        return {}
    out = {}
    for line in f.read_text().splitlines():
        if line.strip():
            folder, _, name = line.strip().partition(" ")
            out[folder] = name.strip() or folder
    return out


def content_seed(root: Path, files: list[str]) -> str:
    """The split seed of one class: SHA-256 of its sorted file paths relative to ``root`` (``/``-joined),
    so the split depends on the files only, not on the dataset's name or where the folder lives."""
    rel = sorted(Path(p).relative_to(root).as_posix() for p in files)
    return hashlib.sha256("\n".join(rel).encode()).hexdigest()


def _stratified_split(items: list[tuple[str, int]], frac: float, name: str, root: Path,
                      folders: list[str]) -> tuple[list, list]:
    """Per class, the sorted files shuffled by ``random.Random("mvlpt-split:<content_seed>")``;
    ``round(n*frac)`` of them (at least 1, at most n-1) go to test. A class with fewer than 2 images
    cannot give a test image: :class:`DataError` naming it."""
    by_class: dict[int, list[str]] = {}
    for p, y in items:
        by_class.setdefault(y, []).append(p)
    single = [f"{folders[y]!r} ({len(v)} image)" for y, v in sorted(by_class.items()) if len(v) < 2]
    if single:
        raise DataError(f"{name}: class folder(s) {', '.join(single)} under {root} have a single image: holding out "
                        f"test_fraction={frac} per class needs at least 2 images per class (one to train, one to "
                        "test); add images, or give root/train/<class>/ and root/test/<class>/ folders")
    train, test = [], []
    for y in sorted(by_class):
        files = sorted(by_class[y])
        random.Random(f"mvlpt-split:{content_seed(root, files)}").shuffle(files)
        n_test = min(max(1, round(len(files) * frac)), len(files) - 1)
        test += [(p, y) for p in files[:n_test]]
        train += [(p, y) for p in files[n_test:]]
    return train, test


def load_imagefolder(spec: DatasetSpec, ddir: Path, hint: str = "") -> VLTask:
    root = ddir / spec.image_dir if spec.image_dir else ddir
    if not root.is_dir():
        raise DatasetNotFoundError(f"{spec.name}: image folder {root} not found. {hint or 'Expected root/<class>/*.jpg'}")
    names = {k: (v,) for k, v in spec.split_names.items()} if spec.split_names else SPLIT_DIRS
    split_dirs = {k: next((root / d for d in ds if (root / d).is_dir()), None) for k, ds in names.items()}
    split_dirs = {k: v for k, v in split_dirs.items() if v is not None}
    has_splits = "train" in split_dirs
    folders = _class_dirs(split_dirs["train"] if has_splits else root)
    if not folders:
        raise DatasetNotFoundError(f"{spec.name}: no class folders under {root}. {hint or 'Expected root/<class>/*.jpg'}")
    class_to_idx = {c: i for i, c in enumerate(folders)}
    if has_splits:
        items = {}
        for k, d in split_dirs.items():
            extra = sorted(set(_class_dirs(d)) - set(folders))
            if extra:
                raise DataError(f"{spec.name}/{k}: class folder(s) {extra} are not in the train split's class list")
            items[k] = make_dataset(str(d), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        if "test" not in items:
            items["train"], items["test"] = _stratified_split(items["train"], spec.test_fraction, spec.name,
                                                              split_dirs["train"], folders)
    else:
        all_items = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        _check_nonempty(spec.name, folders, all_items)
        tr, te = _stratified_split(all_items, spec.test_fraction, spec.name, root, folders)
        items = {"train": tr, "test": te}
    if len(folders) < 2:
        where = split_dirs["train"] if has_splits else root
        raise DataError(f"{spec.name}: only one class folder ({folders[0]!r}) under {where}: a classification task "
                        "needs at least 2 classes (with one, every prediction is right); add class folders or point "
                        "the image folder at the directory that holds them")
    cmap = _read_class_map(ddir)
    classnames = list(spec.classnames) if spec.classnames else [cmap.get(f, f.replace("_", " ")) for f in folders]
    if len(classnames) != len(folders):
        raise DataError(f"{spec.name}: classnames has {len(classnames)} names but there are {len(folders)} class folders")
    _check_nonempty(spec.name, folders, items["train"])
    classnames = check_classnames(spec.name, classnames)
    check_labels(spec.name, classnames, {k: [y for _, y in v] for k, v in items.items()}, nonempty=("train", "test"))
    splits = {
        k: VLDataset(f"{spec.name}/{k}", "classification", classnames, [p for p, _ in v], [y for _, y in v],
                     max_unreadable_fraction=spec.max_unreadable_fraction)
        for k, v in items.items()
    }
    return VLTask(spec.name, "classification", classnames, splits, [], [], meta={"source": "imagefolder", "root": str(root)})


def _check_nonempty(name: str, folders: list[str], items: list[tuple[str, int]]) -> None:
    seen = {y for _, y in items}
    empty = [f for i, f in enumerate(folders) if i not in seen]
    if empty:
        raise DataError(f"{name}: class folder(s) {empty} contain no images (extensions {', '.join(IMG_EXTENSIONS[:4])}, ...)")
