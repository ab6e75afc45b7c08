"""``load_task``: the one entry point, from a registry name, a config mapping or a :class:`DatasetSpec`."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping

from .dataset import Transform, VLTask
from .errors import ConfigError, DataError, DatasetNotFoundError
from .registry import DATASETS, DatasetInfo, describe_layouts, lookup
from .sources.coop_split import load_coop_split, load_fgvc_lists
from .sources.digits import load_digits_task
from .sources.easyvqa import load_easy_vqa, load_easy_vqa_attribute
from .sources.hf import load_hf
from .sources.imagefolder import load_imagefolder
from .sources.vqav2 import load_vqav2
from .spec import DatasetSpec, make_spec
from .templates import templates_for
from .transforms import build_transforms

_READERS = {
    "hf": load_hf,
    "imagefolder": load_imagefolder,
    "coop_split": load_coop_split,
    "fgvc_lists": load_fgvc_lists,
    "vqav2": load_vqav2,
    "easy_vqa": load_easy_vqa,
    "easy_vqa_shape": lambda spec, ddir=None, hint="": load_easy_vqa_attribute(spec, "shape"),
    "easy_vqa_color": lambda spec, ddir=None, hint="": load_easy_vqa_attribute(spec, "color"),
    "digits": load_digits_task,
}


def load_task(
    spec_or_name: DatasetSpec | str | Mapping[str, Any],
    transform: Transform | None = None,
    train_transform: Transform | None = None,
    *,
    root: str | Path | None = None,
    train_augment: bool = True,
    image_size: int = 224,
    **spec_overrides: Any,
) -> VLTask:
    """Load one task, lazily (images are decoded in ``__getitem__``).

    ``transform`` is applied to val/test (default: CLIP preprocessing at ``image_size``) and
    ``train_transform`` to train (default: random resized crop + flip if ``train_augment``, else
    ``transform``). Use :func:`datasets_vl.transforms.transforms_for_model` to match an open_clip model.
    """
    spec = make_spec(spec_or_name, root=str(root) if root is not None else None, **spec_overrides)
    task = _read(spec)
    if task.task_type == "classification" and task.num_classes < 2:
        raise DataError(f"{spec.name}: a classification task needs at least 2 classes, found "
                        f"{task.num_classes} ({task.classnames}); with one class every prediction is right")
    if transform is None:
        default_train, transform = build_transforms(image_size, train_augment=train_augment)
        train_transform = train_transform or default_train
    train_transform = train_transform or transform
    task.splits = {k: ds.with_transform(train_transform if k == "train" else transform) for k, ds in task.splits.items()}
    key = lookup(spec.name).name if spec.source == "auto" and lookup(spec.name) else spec.name
    single, ensemble = templates_for(key, task.task_type)
    task.templates = list(spec.templates) if spec.templates else single
    if spec.ensemble_templates:
        task.ensemble_templates = list(spec.ensemble_templates)
    elif spec.templates:  # user templates replace the built-in ensemble too
        task.ensemble_templates = list(spec.templates)
    else:
        task.ensemble_templates = ensemble
    task.transform, task.train_transform = transform, train_transform
    task.meta.setdefault("spec", spec)
    return task


def _read(spec: DatasetSpec) -> VLTask:
    if spec.source != "auto":
        return _READERS[spec.source](spec, spec.data_root(), "")
    info = lookup(spec.name)
    if info is None:
        close = difflib.get_close_matches(spec.name.lower(), list(DATASETS), n=1)
        raise ConfigError(f"dataset {spec.name!r} is not a registry name{f'; did you mean {close[0]!r}?' if close else ''} "
                          f"Known: {', '.join(sorted(DATASETS))}. Or give an explicit source "
                          "(hf, imagefolder, coop_split, vqav2) with its paths")
    return _read_registry(spec, info)


def _read_registry(spec: DatasetSpec, info: DatasetInfo) -> VLTask:
    if info.builtin:
        return _READERS[info.builtin](spec, None, "")
    root = spec.data_root()
    for lay in info.layouts:
        ddir = root / lay.subdir
        if (ddir / lay.marker).exists():
            lspec = _with_defaults(spec, lay.spec)
            hint = f"Expected layout: {root}/{lay.subdir}/: {lay.get}"
            if lay.source == "coop_split":
                return load_coop_split(lspec, ddir, hint, rename=info.rename)
            return _READERS[lay.source](lspec, ddir, hint)
    if info.hub and spec.allow_download:
        return load_hf(_with_defaults(spec, info.hub), root, "")
    raise DatasetNotFoundError(
        f"dataset {info.name!r} not found under the data root {root} ({root.resolve()}; set root: in the config or $MVLPT_DATA). "
        f"Download it and lay it out as one of:\n{describe_layouts(info, str(root))}")


def _with_defaults(spec: DatasetSpec, defaults: Mapping[str, Any]) -> DatasetSpec:
    """Registry defaults under the user's explicit (non-default) settings."""
    fresh = DatasetSpec(name=spec.name)
    data = dict(defaults)
    data.update({k: v for k, v in vars(spec).items() if v != getattr(fresh, k)})
    data["name"], data["source"] = spec.name, "auto"
    return make_spec(data)
