"""A run's tasks as datasets: ``datasets_vl`` tasks with few-shot sampling, base/new class
subsets, validation sets for model selection, size caps and CLIP transforms matching the backbone
(its :class:`datasets_vl.Preprocess` record).

Validation sets (see :class:`~mvlpt.clip.pipeline.run_config.DataConfig`): built only when the run
selects a checkpoint (:func:`selects_on_val`), from the task's own ``val`` split or a seeded
hold-out of its training split (removed from training); never from the test split, which is
checked (by image name) to share no image with it.

Data integrity: K larger than a classification task's smallest class is an error naming both
(``data.if_too_few: largest`` trains with the largest K available instead: :attr:`RunTask.shots`,
shown in the run directory by :func:`shots_run_dir`). Evaluation and validation sets never replace
an unreadable image (``for_eval``): it is skipped, not scored and counted; :func:`data_report`
gives the per-split counts that the stage runners write to ``data.json`` and ``results.md``."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from datasets_vl import (Preprocess, VLSubset, VLTask, apply_few_shot, base_new_tasks, load_manifest, load_task,
                         sample_few_shot, save_manifest, take_rows)
from mvlpt.core.errors import ConfigError, DataError

from .run_config import SOURCE_STAGES, CLIPRunConfig, TaskEntry, slug


@dataclass
class RunTask:
    """One loaded task of a run."""

    entry: TaskEntry
    task: VLTask
    train: Dataset | None
    eval: Dataset  #: the reported split (``eval_split``)
    val: Dataset | None = None  #: the validation set of model selection (None: no selection)
    val_source: str | None = None  #: ``split`` (the task's ``val`` split) or ``holdout`` (from train)

    @property
    def shots(self) -> int:
        """The K used (lower than ``entry.shots`` under ``data.if_too_few: largest``; 0 = full data)."""
        fs = self.task.meta.get("few_shot")
        return int(fs["k"]) if fs else 0

    def info(self) -> dict[str, Any]:
        """What the task model and ``predict`` need: name, type, class names, templates."""
        return {"name": self.task.name, "task_type": self.task.task_type, "classnames": list(self.task.classnames),
                "template": self.task.templates[0], "templates": list(self.task.templates),
                "ensemble_templates": list(self.task.ensemble_templates)}


def _seeded_rows(n: int, m: int, key: str) -> list[int]:
    """``m`` of ``n`` row indices, sorted, drawn with a generator seeded by the string ``key``."""
    return sorted(random.Random(key).sample(range(n), m))


def _cap(ds: Any, n: int, key: str) -> Any:
    """A seeded random subset of ``n`` rows (all rows when ``n`` is 0 or large enough)."""
    if n <= 0 or len(ds) <= n:
        return ds
    return take_rows(ds, _seeded_rows(len(ds), n, f"mvlpt-cap:{key}"))


def selects_on_val(cfg: CLIPRunConfig) -> bool:
    """Whether a trained run evaluates during training and selects its checkpoint on a validation
    set: ``train.eval_every > 0``, or ``data.val_source`` set explicitly (``split`` / ``holdout``)."""
    return cfg.train.eval_every > 0 or cfg.data.val_source != "auto"


def image_names(ds: Any) -> set[str]:
    """The image names (file paths, or ``<dataset>[<row>]``) of a split or subset, for overlap checks."""
    if isinstance(ds, VLSubset):
        return {ds.parent.file_name(i) for i in ds.indices}
    return {ds.file_name(i) for i in range(len(ds))}


def holdout_rows(n: int, fraction: float, cap: int, key: str) -> list[int]:
    """The rows of an ``n``-row training split held out for validation: a seeded random
    ``max(1, round(fraction × n))`` of them (at most ``cap`` when > 0), sorted; at least one row
    stays for training."""
    m = max(1, round(n * fraction))
    if cap > 0:
        m = min(m, cap)
    if m >= n:
        raise DataError(f"{key}: cannot hold out {m} of {n} training examples for validation and keep any for "
                        "training; use more data, a smaller data.val_fraction / data.val_max, or data.val_source=split")
    return _seeded_rows(n, m, f"mvlpt-holdout:{key}")


def _min_cap(*caps: int) -> int:
    pos = [c for c in caps if c > 0]
    return min(pos) if pos else 0


def build_validation(entry: TaskEntry, cfg: CLIPRunConfig, task: VLTask, own_val: Any,
                     train: Any) -> tuple[Any, str, Any]:
    """``(val, source, train)``: the task's validation set, where it came from (``split`` /
    ``holdout``) and the training split left (smaller by a full-data hold-out). Rules in
    :class:`~mvlpt.clip.pipeline.run_config.DataConfig` (``val_source``)."""
    mode = cfg.data.val_source
    has_own = own_val is not None and len(own_val) > 0
    if mode == "auto":
        mode = "split" if has_own else "holdout"
    key = f"{task.name}:{entry.seed}"
    if mode == "split":
        if not has_own:
            raise DataError(f"task {task.name!r} has no 'val' split to select the checkpoint on "
                            "(data.val_source=split); "
                            "set data.val_source to 'holdout' (or 'auto') to hold out part of the training split")
        val = own_val
        if entry.shots > 0:  # CoOp: min(K, 4) validation examples per class of the val split (data.val_k)
            fs = sample_few_shot(own_val.labels, cfg.data.few_shot_val_k(entry.shots), entry.seed, val_k=0,
                                 num_classes=task.num_classes,
                                 if_too_few="all", skip_empty=True)
            val = take_rows(own_val, fs.train)
    elif entry.shots > 0:  # few-shot hold-out: the manifest's val rows (train pool rows not drawn as shots)
        val = task.splits.get("val")
        if val is None or len(val) == 0:
            raise DataError(f"task {task.name!r}: no training examples are left beside the {entry.shots} shots "
                            "per class to hold out for validation (data.val_source=holdout); use a smaller K, "
                            "data.val_source=split on a task with a 'val' split, or train.eval_every=0 (no selection)")
    else:  # full-data hold-out, removed from training
        rows = holdout_rows(len(train), cfg.data.val_fraction, _min_cap(cfg.data.val_max, entry.max_eval), key)
        held = set(rows)
        val = take_rows(train, rows, task.transform)
        train = take_rows(train, [i for i in range(len(train)) if i not in held])
    val = _cap(val, _min_cap(cfg.data.val_max, entry.max_eval), f"{task.name}:val:{entry.seed}")
    test = task.splits.get("test")
    if test is not None:
        shared = image_names(val) & image_names(test)
        if shared:
            raise DataError(f"task {task.name!r}: {len(shared)} validation image(s) are also in the test split "
                            f"(e.g. {sorted(shared)[:3]}); the dataset's splits overlap — fix them or use "
                            "data.val_source=holdout")
    return val, mode, train


def load_entry(entry: TaskEntry, cfg: CLIPRunConfig, pre: Preprocess, run_dir: Path | None = None,
               need_train: bool = True) -> RunTask:
    """Load one task: transforms → base/new subset → K-shot sampling (manifest in ``run_dir/splits``)
    → validation set (when the run selects on one, :func:`selects_on_val`) → caps."""
    hflip = cfg.data.hflip if entry.hflip is None else entry.hflip
    train_tf, eval_tf = pre.transforms(cfg.data.train_augment, crop_scale=tuple(cfg.data.crop_scale), hflip=hflip)
    task = load_task(entry.dataset, eval_tf, train_tf, root=cfg.data.root)
    if entry.classes != "all":
        base, new = base_new_tasks(task)
        task = base if entry.classes == "base" else new
    own_val = task.splits.get("val")  # the dataset's own val split (few-shot sampling replaces task.splits["val"])
    if need_train and entry.shots > 0:
        manifest = None
        if run_dir is not None:
            manifest = run_dir / "splits" / f"{slug(task.name)}_k{entry.shots}_s{entry.seed}.json"
        # VQA: K per best answer; rare answers have fewer examples and keep all of them
        policy = cfg.data.if_too_few if task.task_type == "classification" else "all"
        task = apply_few_shot(task, entry.shots, entry.seed, manifest=manifest, if_too_few=policy,
                              val_k=cfg.data.few_shot_val_k(entry.shots), option="data.if_too_few=largest")
    select = need_train and selects_on_val(cfg)
    if select and cfg.eval_split == "val":
        raise ConfigError("eval_split=val would report the numbers on the split the checkpoint is selected on; "
                          "report on eval_split=test, or turn selection off (train.eval_every=0, data.val_source=auto)")
    if cfg.eval_split not in task.splits:
        raise DataError(f"task {task.name!r} has no {cfg.eval_split!r} split to evaluate on "
                        f"(it has {sorted(task.splits)}); set eval_split to one of them")
    train = task.splits["train"] if need_train else None
    val, val_source = None, None
    if select:
        val, val_source, train = build_validation(entry, cfg, task, own_val, train)
    if train is not None:
        train = _cap(train, entry.max_train, f"{task.name}:train:{entry.seed}")
        if len(train) == 0:
            raise DataError(f"task {task.name!r} has no training examples")
    ev = _cap(task.splits[cfg.eval_split], entry.max_eval, f"{task.name}:{cfg.eval_split}")
    return RunTask(entry, task, train, ev.for_eval(), val.for_eval() if val is not None else None, val_source)


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


def shots_run_dir(cfg: CLIPRunConfig, run_dir: Path, tasks: list[RunTask]) -> Path:
    """``run_dir`` with ``k<K>_s<seed>`` in its name changed to ``k<used>of<K>_s<seed>`` when the
    target was trained with fewer shots than asked (``data.if_too_few: largest``); else unchanged."""
    if cfg.stage in SOURCE_STAGES or len(tasks) != 1:
        return run_dir
    t = tasks[0]
    req, used = t.entry.shots, t.shots
    if not req or used == req:
        return run_dir
    name = re.sub(rf"(^|_)k{req}(_s{t.entry.seed})", rf"\1k{used}of{req}\2", run_dir.name, count=1)
    return run_dir.with_name(name)


def write_manifests(tasks: list[RunTask], run_dir: Path) -> None:
    """Write each few-shot task's split to ``run_dir/splits/<task>_k<K>_s<seed>.json``; an existing
    manifest (a resumed run) must hold the same rows, else :class:`DataError` (the data changed)."""
    for t in tasks:
        fs = t.task.meta.get("few_shot")
        if not fs or fs.get("split") is None:
            continue
        split, labels = fs["split"], fs["pool_labels"]
        path = run_dir / "splits" / f"{slug(t.task.name)}_k{t.entry.shots}_s{t.entry.seed}.json"
        if path.is_file():
            old = load_manifest(path, labels)
            if (old.train, old.val, old.k) != (split.train, split.val, split.k):
                raise DataError(f"{path}: the few-shot rows drawn now differ from the ones this run was started "
                                "with; the dataset changed since — start a new run directory")
        else:
            save_manifest(path, split, labels, t.task.name, t.task.classnames)


def _unreadable(ds: Any, scored: int | None = None) -> dict[str, Any]:
    """One split's integrity summary: ``size``, ``unreadable`` (+ ``files``), and for evaluation sets
    ``scored`` (= ``n``) — unreadable images of evaluation sets are skipped, so ``scored = size - unreadable``
    (counted from ``n`` when the tracker ran in DataLoader workers). Warns / raises as the tracker does."""
    rep = ds.report_unreadable(reset=False)
    out: dict[str, Any] = {"size": len(ds), "unreadable": int(rep["unreadable"]), "files": sorted(rep["files"])}
    if scored is not None:
        out["scored"] = int(scored)
        out["unreadable"] = max(out["unreadable"], len(ds) - int(scored))
        frac = out["unreadable"] / max(len(ds), 1)
        limit = ds.unreadable.max_fraction
        if frac > limit:
            raise DataError(f"{ds.name}: {out['unreadable']} of its {len(ds)} images could not be read and were "
                            f"not scored ({frac:.2%} > max_unreadable_fraction {limit:.0%}); repair the files")
    return out


def data_report(tasks: list[RunTask], metrics: dict[str, float], split: str) -> dict[str, dict[str, Any]]:
    """Per task: the K used / asked for and, per split (``train``, ``val``, ``split``), its size and
    unreadable images (evaluation splits: also ``scored``, the ``n`` of the metrics)."""
    out: dict[str, dict[str, Any]] = {}
    for t in tasks:
        name = t.task.name
        row: dict[str, Any] = {"shots": t.shots, "shots_requested": t.entry.shots, "splits": {}}
        if t.train is not None:
            row["splits"]["train"] = _unreadable(t.train)
        if t.val is not None:
            row["splits"]["val"] = _unreadable(t.val)
        n = metrics.get(f"{name}/n")
        row["splits"][split] = _unreadable(t.eval, int(n) if n is not None else None)
        out[name] = row
    return out
