"""Fail fast: before a command's first training step, check everything it will need.

:func:`preflight` runs in seconds, on files and configs only (no model is built, nothing trains):

* every stage / sweep-cell config the command will run resolves (config errors of a late cell);
* every task's dataset resolves and one sample of each split decodes (and ``eval_split`` exists);
* each consumed teacher / source run exists, or is produced earlier by the same command
  (``experiment``: teachers → source → sweep), and fits (:func:`~.compat.check_compatible`,
  :func:`~.compat.check_same_tasks`);
* the output directories are writable (a probe file in the nearest existing folder; no run
  directory is created);
* the backbone resolves offline: ``tiny-clip``, a model config / checkpoint, a ``local-dir:``;
  a hub model is looked up in the local open_clip / Hugging Face cache without any download.

Every problem found is collected and raised as one :class:`~mvlpt.core.errors.PreflightError`.
:func:`check_named_backbone` (called when a config file is loaded) refuses a config that names no
backbone when the default (``ViT-B-16`` / ``openai``) is not cached: it would be downloaded silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from mvlpt.core.config import to_dict
from mvlpt.core.errors import MVLPTError, PreflightError
from mvlpt.core.run_dir import writable_problem

from .compat import check_compatible, check_same_tasks, read_run_config
from .backbone_check import backbone_problems
from .plan import cell_config, cells, source_methods, sweep_dir
from .run_config import CLIPRunConfig, TaskEntry, config_for_stage

#: the key that makes a run offline, named by the backbone errors
# --------------------------------------------------------------------------------------------
# the runs of a command

def _planned(cfg: CLIPRunConfig, stage: str, problems: list[str]) -> list[CLIPRunConfig]:
    """The stage configs ``stage`` will run, in order (``experiment``: sources, then the sweep cells)."""
    if stage not in ("experiment", "fewshot"):
        return [cfg]

    runs: list[CLIPRunConfig] = []
    if stage == "experiment":
        for mode, stages in (("mpt", ("teachers", "source")), ("mvlpt", ("source",))):
            for method, extra in source_methods(cfg, mode).items():
                for s in stages:
                    try:
                        runs.append(config_for_stage(cfg, s, extra))
                    except MVLPTError as e:
                        problems.append(f"{s} stage ({method}): {e}")
    try:
        out_dir = sweep_dir(cfg)
        todo = cells(cfg)
    except MVLPTError as e:
        problems.append(str(e))
        return runs
    b2n = cfg.sweep.base_to_new
    for cell in todo:
        try:
            runs.append(cell_config(cfg, cell, out_dir, "base" if b2n else None))
        except MVLPTError as e:
            problems.append(f"sweep cell {cell.method.name} K={cell.shots} seed={cell.seed}: {e}")
    return runs


# --------------------------------------------------------------------------------------------
# checks

def _consumed(run: CLIPRunConfig) -> tuple[str, Path] | None:
    """``(what, path)`` of the run a stage loads: the teachers of an MPT source, the source of a target."""
    if run.stage == "source" and run.source_mode == "mpt":
        return "teacher run", run.resolved_teacher_path()
    if run.stage == "target":
        return "source run", run.resolved_source_path()
    return None


def check_runs(runs: Sequence[CLIPRunConfig], problems: list[str]) -> None:
    """Each consumed teacher / source run exists (or an earlier run of ``runs`` writes it) and fits."""
    produced: set[Path] = set()
    found: dict[Path, Any] = {}
    for run in runs:
        need = _consumed(run)
        if need is not None:
            what, path = need
            key = path.resolve()
            if key not in produced:
                try:
                    if key not in found:
                        found[key] = read_run_config(path, what)[0]
                    saved = found[key]
                    if saved is not None:
                        check_compatible(saved, run, what, path)
                        if what == "teacher run":
                            check_same_tasks(saved, [t.name for t in run.tasks()], what, path)
                except MVLPTError as e:
                    problems.append(str(e))
        if run.stage != "zeroshot":
            produced.add(run.resolved_run_dir().resolve())


def _decode_sample(entry: TaskEntry, cfg: CLIPRunConfig) -> None:
    from datasets_vl import build_transforms, load_task

    _, eval_tf = build_transforms(32, train_augment=False)
    task = load_task(entry.dataset, eval_tf, eval_tf, root=cfg.data.root)
    for split, ds in task.splits.items():
        if len(ds) == 0:
            raise ValueError(f"its {split!r} split is empty")
        try:
            ds[0]
        except Exception as e:  # noqa: BLE001 - any decoding error is reported with its split
            raise ValueError(f"the first sample of its {split!r} split does not decode ({type(e).__name__}: {e})") from None
    if cfg.eval_split not in task.splits:
        raise ValueError(f"it has no {cfg.eval_split!r} split to evaluate on (it has {sorted(task.splits)}); "
                         "set eval_split to one of them")


def check_data(runs: Sequence[CLIPRunConfig], problems: list[str]) -> None:
    """Every task's dataset resolves and one sample of each split decodes (each dataset once)."""
    seen: set[str] = set()
    for run in runs:
        try:
            entries = run.tasks()
        except MVLPTError as e:
            problems.append(str(e))
            continue
        for entry in entries:
            key = json.dumps([entry.dataset, run.data.root, run.eval_split], sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            try:
                _decode_sample(entry, run)
            except Exception as e:  # noqa: BLE001 - reported, with the task's name
                problems.append(f"task {entry.name!r}: {e}")


def _nearest(path: Path) -> Path:
    """``path`` or its nearest existing parent."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_outputs(cfg: CLIPRunConfig, stage: str, runs: Sequence[CLIPRunConfig], problems: list[str]) -> None:
    """The output folder, the sweep folder and every run directory can be written."""
    dirs = [Path(cfg.output_dir)]
    if stage in ("experiment", "fewshot"):

        try:
            dirs.append(sweep_dir(cfg))
        except MVLPTError:
            pass  # reported with the plan
    for run in runs:
        try:
            dirs.append(run.resolved_run_dir())
        except MVLPTError:
            pass
    probes = {_nearest(d): d for d in reversed(dirs)}  # one probe per existing folder, named by its first path
    for d in probes.values():
        msg = writable_problem(d)
        if msg:
            problems.append(msg)


# --------------------------------------------------------------------------------------------

def preflight(cfg: CLIPRunConfig, stage: str, log: Callable[[str], Any] | None = print) -> list[str]:
    """Check everything command ``stage`` (a stage name, ``fewshot`` or ``experiment``) needs; raise one
    :class:`~mvlpt.core.errors.PreflightError` listing every problem. Returns the notes (also logged)."""
    problems: list[str] = []
    notes: list[str] = []
    runs = _planned(cfg, stage, problems)
    for bb in {json.dumps(to_dict(r.backbone), sort_keys=True, default=str): r.backbone
               for r in [cfg, *runs]}.values():
        problems += backbone_problems(bb, notes)
    check_runs(runs, problems)
    check_outputs(cfg, stage, runs, problems)
    check_data(runs, problems)
    PreflightError.check(problems, f"mvlpt {stage}")
    for n in dict.fromkeys(notes):
        if log is not None:
            log(f"note: {n}")
    return list(dict.fromkeys(notes))
