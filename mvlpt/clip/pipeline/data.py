"""A run's tasks as datasets: ``datasets_vl`` tasks with few-shot sampling, base/new class
subsets, size caps and CLIP transforms matching the backbone."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from torch.utils.data import Dataset

from datasets_vl import VLTask, apply_few_shot, base_new_tasks, build_transforms, load_task, take_rows
from mvlpt.core.errors import DataError

from .run_config import CLIPRunConfig, TaskEntry, slug


@dataclass
class Preprocess:
    """CLIP image preprocessing settings (from the backbone)."""

    size: int = 224
    mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_any(cls, p: Any) -> "Preprocess":
        """From open_clip's preprocess dict / ``PreprocessCfg`` / an object with those attributes."""
        if p is None:
            return cls()
        get = p.get if isinstance(p, Mapping) else (lambda k, d=None: getattr(p, k, d))
        size = get("size", None) or get("image_size", None) or 224
        size = size[0] if isinstance(size, (tuple, list)) else size
        d = cls()
        return cls(int(size), tuple(get("mean", None) or d.mean), tuple(get("std", None) or d.std),
                   str(get("interpolation", None) or d.interpolation), str(get("resize_mode", None) or d.resize_mode))


@dataclass
class RunTask:
    """One loaded task of a run."""

    entry: TaskEntry
    task: VLTask
    train: Dataset | None
    eval: Dataset

    def info(self) -> dict[str, Any]:
        """What the task model and ``predict`` need: name, type, class names, templates."""
        return {"name": self.task.name, "task_type": self.task.task_type, "classnames": list(self.task.classnames),
                "template": self.task.templates[0], "templates": list(self.task.templates),
                "ensemble_templates": list(self.task.ensemble_templates)}


def _cap(ds: Any, n: int, key: str) -> Any:
    """A seeded random subset of ``n`` rows (all rows when ``n`` is 0 or large enough)."""
    if n <= 0 or len(ds) <= n:
        return ds
    rows = sorted(random.Random(f"mvlpt-cap:{key}").sample(range(len(ds)), n))
    return take_rows(ds, rows)


def load_entry(entry: TaskEntry, cfg: CLIPRunConfig, pre: Preprocess, run_dir: Path | None = None,
               need_train: bool = True) -> RunTask:
    """Load one task: transforms → base/new subset → K-shot sampling (manifest in ``run_dir/splits``) → caps."""
    hflip = cfg.data.hflip if entry.hflip is None else entry.hflip
    train_tf, eval_tf = build_transforms(pre.size, pre.mean, pre.std, pre.interpolation, cfg.data.train_augment,
                                         resize_mode=pre.resize_mode, crop_scale=tuple(cfg.data.crop_scale), hflip=hflip)
    task = load_task(entry.dataset, eval_tf, train_tf, root=cfg.data.root)
    if entry.classes != "all":
        base, new = base_new_tasks(task)
        task = base if entry.classes == "base" else new
    if need_train and entry.shots > 0:
        manifest = None
        if run_dir is not None:
            manifest = run_dir / "splits" / f"{slug(task.name)}_k{entry.shots}_s{entry.seed}.json"
        task = apply_few_shot(task, entry.shots, entry.seed, manifest=manifest, if_too_few="all")
    if cfg.eval_split not in task.splits:
        raise DataError(f"task {task.name!r} has no {cfg.eval_split!r} split to evaluate on "
                        f"(it has {sorted(task.splits)}); set eval_split to one of them")
    train = _cap(task.splits["train"], entry.max_train, f"{task.name}:train:{entry.seed}") if need_train else None
    if train is not None and len(train) == 0:
        raise DataError(f"task {task.name!r} has no training examples")
    ev = _cap(task.splits[cfg.eval_split], entry.max_eval, f"{task.name}:{cfg.eval_split}")
    return RunTask(entry, task, train, ev)


def load_run_tasks(cfg: CLIPRunConfig, pre: Preprocess, run_dir: Path | None = None,
                   need_train: bool = True) -> list[RunTask]:
    """The tasks of ``cfg.stage`` (sources or target), in config order (= task ids)."""
    tasks = [load_entry(e, cfg, pre, run_dir, need_train) for e in cfg.tasks()]
    names = [t.task.name for t in tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"task names must be unique within a run; {dup} appear more than once "
                        "(give a dataset mapping with its own 'name' to use a dataset twice)")
    return tasks
