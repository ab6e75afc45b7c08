"""Fail fast for the T5 head: before a stage loads its backbone, check what it will need.

:func:`preflight` reads files and configs only (no model, no tokenizer, no dataset build):

* each task's local data files exist and their first row parses into an example (hub data, named
  by the config, is not looked at);
* the teachers run (source stage with distillation) / source run (target stage) / trained run
  (``eval``) exists, holds a ``config.json`` and has a prompt for every task it must serve;
* the output directory is writable (a probe file in the nearest existing folder);
* the T5 resolves offline: ``tiny``, a shipped or local directory with ``config.json``, or a hub
  name already in the Hugging Face cache. A hub name that is not cached is a note (it will be
  downloaded) when the config names it, a problem when downloads are off or when it is only the
  default (``backbone.name`` unset and no run to take it from): nothing is downloaded silently.

Every problem found is raised as one :class:`~mvlpt.core.errors.PreflightError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from mvlpt.core.checkpoint import CONFIG_FILE, read_json, resolve_prompts_file
from mvlpt.core.errors import MVLPTError, PreflightError
from mvlpt.core.run_dir import writable_problem
from mvlpt.core.stages import resolve_prompt_config

from .config import BackboneConfig, TaskConfig, TextRunConfig

#: the key that makes a run offline, named by the backbone errors
OFFLINE_HINT = "set `backbone.name: tiny-t5` (the shipped pretrained tiny T5, offline)"
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENV)


# --------------------------------------------------------------------------------------------
# data

def first_row(path: Path) -> dict[str, Any]:
    """The first row of a JSON Lines / JSON / CSV / TSV / Parquet file, with the types ``datasets`` gives."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with path.open() as f:
            head = f.read(1)
            f.seek(0)
            if head == "[":
                rows = json.load(f)
                if not rows:
                    raise ValueError("the file holds no rows")
                return rows[0]
            for line in f:
                if line.strip():
                    return json.loads(line)
        raise ValueError("the file holds no rows")
    if suffix in (".csv", ".tsv"):
        import pandas as pd

        df = pd.read_csv(path, nrows=1, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        df = next(pq.ParquetFile(path).iter_batches(batch_size=1)).to_pandas()
    else:
        raise ValueError(f"unsupported file type {suffix!r}")
    if df.empty:
        raise ValueError("the file holds no rows")
    return json.loads(df.head(1).to_json(orient="records"))[0]


def _task_files(tc: TaskConfig, data_root: str | None) -> list[tuple[str, Path]]:
    """``(split, file)`` of the train and eval splits a task reads locally (``[]`` for hub data)."""
    from .data import _find_file, _split_name, task_spec

    spec = task_spec(tc)
    folder = Path(tc.path) if tc.path else Path(data_root) / spec.local_dir if data_root and spec.local_dir else None
    out = []
    for which in ("train", "eval"):
        if tc.data_files:
            split = _split_name(tc, spec, which, local=True)
            if split not in tc.data_files:
                raise ValueError(f"data_files has no split {split!r}; it has {sorted(tc.data_files)}")
            out.append((split, Path(tc.data_files[split])))
        elif folder is not None:
            split = _split_name(tc, spec, which, local=True)
            out.append((split, _find_file(folder, split)))
    return out


def data_problems(cfg: TextRunConfig, data_root: str | None) -> list[str]:
    """Each task's local files exist and their first row parses."""
    from .data import task_spec
    from .tasks import examples_from_rows

    out = []
    for tc in cfg.tasks:
        try:
            files = _task_files(tc, data_root)
        except Exception as e:  # noqa: BLE001 - reported with the task's name
            out.append(f"task {tc.name!r}: {e}")
            continue
        for split, path in files:
            try:
                if not path.is_file():
                    raise ValueError("no such file")
                examples_from_rows(task_spec(tc), [first_row(path)])
            except Exception as e:  # noqa: BLE001
                out.append(f"task {tc.name!r} ({split} split, {path}): {e}")
    return out


# --------------------------------------------------------------------------------------------
# consumed runs

def consumed(cfg: TextRunConfig, for_eval: bool = False) -> list[tuple[str, str]]:
    """``(key, path)`` of the runs this command reads."""
    if for_eval:
        return [("checkpoint", cfg.checkpoint or cfg.output_dir)]

    out = []
    pcfg = resolve_prompt_config(cfg.prompt, cfg.stage)  # type: ignore[arg-type]
    if pcfg.init == "source" and pcfg.source_path:
        out.append(("prompt.source_path", pcfg.source_path))
    d = cfg.train.distill
    if cfg.stage == "source" and cfg.teacher_path and (d.kl_weight > 0 or d.mse_weight > 0):
        out.append(("teacher_path", cfg.teacher_path))
    return out


def read_run(key: str, path: str) -> dict[str, Any]:
    """The ``config.json`` of a run (``{}`` for a bare prompts file); raises naming ``key`` when missing."""
    try:
        prompts = resolve_prompts_file(path)
    except FileNotFoundError as e:
        first = {"teacher_path": "text-mpt teachers", "prompt.source_path": "text-mpt source"}.get(key, "the stage")
        raise ValueError(f"{key} {path} not found ({e}); run `{first}` first or point {key} at its run "
                         "directory") from None
    for cand in (prompts.parent / CONFIG_FILE, Path(path) / CONFIG_FILE):
        if cand.is_file():
            return read_json(cand)
    return {}


def run_problems(cfg: TextRunConfig, runs: list[tuple[str, str]], found: dict[str, Mapping[str, Any]]) -> list[str]:
    """Each run exists and has a prompt for every task it must serve (teachers: the source tasks)."""
    out = []
    for key, path in runs:
        try:
            config = read_run(key, path)
        except (ValueError, MVLPTError) as e:
            out.append(str(e))
            continue
        found[key] = config
        names = (config.get("meta") or {}).get("task_names")
        if key in ("teacher_path", "checkpoint") and names is not None:
            missing = [t for t in cfg.task_names if t not in names]
            if missing:
                out.append(f"{key} {path} has no prompt for task(s) {missing}; it was trained on {list(names)}")
    return out


# --------------------------------------------------------------------------------------------
# backbone

def _hf_cached(repo: str, filename: str = "config.json") -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, filename), str)


def backbone_problems(bb: BackboneConfig, runs: Mapping[str, Mapping[str, Any]], notes: list[str]) -> list[str]:
    """What keeps the stage's T5 from loading offline (see the module docstring)."""
    from .backbone import DEFAULT_NAME, resolve_name

    name = bb.name
    if name is None:
        if runs:
            return []  # the backbone of the run read: the stage checks it when it loads it
        if _hf_cached(DEFAULT_NAME):
            return []
        return [f"the config names no backbone, so the default {DEFAULT_NAME} would be downloaded from the hub (it "
                f"is not in the local Hugging Face cache); {OFFLINE_HINT}, or name the hub model to download it "
                f"(`backbone.name: {DEFAULT_NAME}`)"]
    if name == "tiny":
        return []
    source = resolve_name(name)
    path = Path(source).expanduser()
    if path.is_dir():
        return [] if (path / "config.json").is_file() else [
            f"backbone.name={name!r}: {path} has no config.json (save the model with model.save_pretrained(dir))"]
    if source.startswith((".", "/", "~")) or path.exists():
        return [f"backbone.name={name!r} looks like a local path but no such directory exists "
                "(save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir))"]
    if _hf_cached(source):
        return []
    msg = f"backbone.name={name!r} is not in the local Hugging Face cache"
    if _offline():
        return [f"{msg} and downloads are off ({'/'.join(OFFLINE_ENV)}); {OFFLINE_HINT}, or download it first"]
    notes.append(f"{msg}: it will be downloaded when the stage starts; {OFFLINE_HINT} to stay offline")
    return []


# --------------------------------------------------------------------------------------------

def preflight(cfg: TextRunConfig, command: str, data_root: str | None = None,
              log: Callable[[str], Any] | None = print) -> list[str]:
    """Check what ``text-mpt <command>`` (``teachers``, ``source``, ``adapt`` or ``eval``) needs; raise one
    :class:`~mvlpt.core.errors.PreflightError` listing every problem. ``data_root``: the resolved one (default:
    the config's). Returns the notes (also logged)."""
    problems: list[str] = []
    notes: list[str] = []
    found: dict[str, Mapping[str, Any]] = {}
    try:
        runs = consumed(cfg, for_eval=command == "eval")
    except MVLPTError as e:
        problems.append(str(e))
        runs = []
    problems += run_problems(cfg, runs, found)
    problems += backbone_problems(cfg.backbone, found, notes)
    out_dir = Path(cfg.output_dir) / "eval" if command == "eval" else Path(cfg.output_dir)
    msg = writable_problem(out_dir)
    if msg:
        problems.append(msg)
    problems += data_problems(cfg, data_root if data_root is not None else cfg.data_root)
    PreflightError.check(problems, f"text-mpt {command}")
    notes = list(dict.fromkeys(notes))
    for n in notes:
        if log is not None:
            log(f"note: {n}")
    return notes
