"""Hugging Face ``datasets``: a hub id, or local Parquet / ``imagefolder`` files via ``load_dataset``."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from ..checks import check_classnames, check_labels
from ..dataset import VLDataset, VLTask
from ..errors import DataError, DatasetNotFoundError
from ..spec import DatasetSpec

SPLIT_ALIASES = {"train": ("train",), "val": ("validation", "val", "valid", "dev"), "test": ("test",)}


class HFImageColumn:
    """Lazy view of one image column (``decode=False``): item ``i`` is ``{"bytes", "path"}`` or a path/bytes."""

    def __init__(self, ds: Any, column: str, prefix: str = "") -> None:
        self.ds = ds.select_columns([column])
        self.column = column
        self.prefix = prefix

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Any:
        return self.ds[int(i)][self.column]

    def name(self, i: int) -> str:
        """``prefix[i]`` plus the stored file path, if any (never raises: used in error reports)."""
        try:
            ref = self[i]
            if isinstance(ref, dict) and ref.get("path"):
                return f"{self.prefix}[{i}] ({ref['path']})"
        except Exception:  # noqa: BLE001
            pass
        return f"{self.prefix}[{i}]"


def _resolve_files(files: str | list[str], ddir: Path, name: str, hint: str) -> list[str]:
    out = []
    for f in [files] if isinstance(files, str) else files:
        p = str(Path(f) if Path(f).is_absolute() else ddir / f)
        if not glob.glob(p):
            raise DatasetNotFoundError(f"{name}: data file {p} not found. {hint}")
        out.append(p)
    return out


def load_hf(spec: DatasetSpec, ddir: Path, hint: str = "") -> VLTask:
    """Load with ``datasets.load_dataset`` and wrap each split lazily (images decoded per item)."""
    import datasets

    kwargs: dict[str, Any] = {}
    if spec.data_files:
        builder = spec.hub_name or _builder_for(spec.data_files)
        kwargs["data_files"] = {s: _resolve_files(f, ddir, spec.name, hint) for s, f in spec.data_files.items()}
    elif spec.data_dir:
        builder = spec.hub_name or "imagefolder"
        data_dir = ddir / spec.data_dir
        if not data_dir.is_dir():
            raise DatasetNotFoundError(f"{spec.name}: directory {data_dir} not found. {hint}")
        kwargs["data_dir"] = str(data_dir)
    elif spec.hub_name:
        if not spec.allow_download:
            raise DatasetNotFoundError(
                f"{spec.name}: no local files given and downloading is off. Either put the files where the registry "
                f"says ({hint or 'see datasets_vl/README.md'}), or set allow_download: true to fetch the Hugging Face "
                f"hub dataset {spec.hub_name!r}.")
        builder = spec.hub_name
    else:
        raise DataError(f"{spec.name}: source 'hf' needs hub_name, data_files or data_dir")
    dd = datasets.load_dataset(builder, spec.hf_config, **kwargs)
    if not isinstance(dd, datasets.DatasetDict):
        dd = datasets.DatasetDict({"train": dd})
    return wrap_dataset_dict(spec, dd)


def _builder_for(data_files: dict[str, str | list[str]]) -> str:
    first = next(iter(data_files.values()))
    first = first if isinstance(first, str) else first[0]
    for ext, builder in ((".parquet", "parquet"), (".arrow", "arrow"), (".csv", "csv"), (".json", "json"), (".jsonl", "json")):
        if first.endswith(ext):
            return builder
    return "imagefolder"


def _pick_split(spec: DatasetSpec, ours: str, available: list[str]) -> str | None:
    if ours in spec.split_names:
        src = spec.split_names[ours]
        if src not in available:
            raise DataError(f"{spec.name}: split_names.{ours} = {src!r} is not one of the splits {available}")
        return src
    return next((a for a in SPLIT_ALIASES[ours] if a in available), None)


def wrap_dataset_dict(spec: DatasetSpec, dd: Any) -> VLTask:
    """A ``DatasetDict`` with an image and a label column → :class:`VLTask` (classification)."""
    import datasets

    available = list(dd.keys())
    chosen = {ours: _pick_split(spec, ours, available) for ours in ("train", "val", "test")}
    chosen = {k: v for k, v in chosen.items() if v is not None}
    if "train" not in chosen or "test" not in chosen:
        raise DataError(f"{spec.name}: need a train and a test split, found {available}; map them with split_names, "
                        "e.g. {test: validation}")
    first = dd[chosen["train"]]
    for col in (spec.image_column, spec.label_column):
        if col not in first.column_names:
            raise DataError(f"{spec.name}: column {col!r} not found; columns are {first.column_names} "
                            "(set image_column / label_column)")
    feat = first.features[spec.label_column]
    raw_labels = {k: list(dd[s][spec.label_column]) for k, s in chosen.items()}
    if isinstance(feat, datasets.ClassLabel):
        classnames = list(feat.names)
        labels = raw_labels
    elif all(isinstance(y, str) for y in raw_labels["train"]):
        classnames = sorted(set(raw_labels["train"]))
        idx = {c: i for i, c in enumerate(classnames)}
        labels = {}
        for k, ys in raw_labels.items():
            unknown = sorted({y for y in ys if y not in idx})
            if unknown:
                raise DataError(f"{spec.name}/{k}: label(s) {unknown[:10]} are not classes of the train split")
            labels[k] = [idx[y] for y in ys]
    else:
        if spec.classnames is None:
            raise DataError(f"{spec.name}: label column {spec.label_column!r} has no class names (not a ClassLabel); "
                            "give classnames in the dataset config")
        classnames = list(spec.classnames)
        labels = raw_labels
    if spec.classnames is not None:
        if len(spec.classnames) != len(classnames):
            raise DataError(f"{spec.name}: classnames has {len(spec.classnames)} names, the data has {len(classnames)} classes")
        classnames = list(spec.classnames)
    classnames = check_classnames(spec.name, classnames)
    check_labels(spec.name, classnames, labels)
    splits = {}
    for k, s in chosen.items():
        ds = dd[s]
        if isinstance(ds.features[spec.image_column], datasets.Image):
            ds = ds.cast_column(spec.image_column, datasets.Image(decode=False))
        refs = HFImageColumn(ds, spec.image_column, f"{spec.name}/{k}")
        splits[k] = VLDataset(f"{spec.name}/{k}", "classification", classnames, refs, labels[k],
                              ref_names=refs.name,
                              max_unreadable_fraction=spec.max_unreadable_fraction)
    return VLTask(spec.name, "classification", classnames, splits, [], [], meta={"source": "hf", "splits": chosen})

