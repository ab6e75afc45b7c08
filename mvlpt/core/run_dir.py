"""A run directory belongs to one resolved config: its fingerprint, the diff against another, ``fresh``.

The fingerprint is a hash of every config key that can change a run's results. :data:`EXCLUDED`
is the one list of keys that cannot (display, logging and saving cadence, worker/thread counts,
output paths, health strictness, the switches that only say how a config was assembled). A
directory whose saved ``config.json`` differs from the new config in any other key is refused
(:class:`RunConfigMismatchError`, naming each key old → new) unless the caller asks for
``fresh``: the directory's previous contents are then removed before training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from .checkpoint import write_json
from .errors import MVLPTError

CONFIG_FILE = "config.json"

#: dotted config keys (and everything below them) left out of the fingerprint: they do not change results
EXCLUDED: tuple[str, ...] = (
    "fresh",                      # the switch that asks for a new run
    "run_dir", "output_dir",      # where the run is written (text_mpt: output_dir is the run dir)
    "export_dir", "checkpoint",   # pretraining export target; text_mpt's evaluated checkpoint
    "threads", "workers",         # torch CPU threads; processes running independent runs side by side
    "overrides", "stages", "methods", "sweep",  # CLIP: how the config was assembled (applied to the resolved keys)
    "selection.eval_part",        # text_mpt: what `text-mpt eval` scores later
    "train.progress", "train.tensorboard", "train.log_every", "train.save_every", "train.keep_last",
    "train.num_workers", "train.health.strict",
)


#: keys added after runs were made, left out of the fingerprint while they hold the value that gives the
#: old behaviour, so that a run made before the key existed keeps its fingerprint (and resumes) after an upgrade
ADDED_AT_DEFAULT: dict[str, Any] = {
    "train.select_ties": "first",
}


class RunConfigMismatchError(MVLPTError, ValueError):
    """A run directory holds a run of another config (resuming would mix two runs)."""


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as its JSON form (tuples → lists, paths → strings), as ``config.json`` stores it."""
    return json.loads(json.dumps(dict(config), default=str))


def _excluded(key: str, exclude: Iterable[str]) -> bool:
    return any(key == e or key.startswith(e + ".") for e in exclude)


def flatten(config: Mapping[str, Any], exclude: Iterable[str] = EXCLUDED) -> dict[str, Any]:
    """``{"train.optim.lr": 0.05, ...}``: nested mappings as dotted keys (lists are values), minus ``exclude``."""
    exclude = tuple(exclude)
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif prefix and not _excluded(prefix, exclude):
            if prefix in ADDED_AT_DEFAULT and node == ADDED_AT_DEFAULT[prefix]:
                return
            out[prefix] = node

    walk(_plain(config), "")
    return out


def fingerprint(config: Mapping[str, Any], exclude: Iterable[str] = EXCLUDED) -> str:
    """A 16-hex-digit hash of the result-changing keys of ``config``."""
    flat = flatten(config, exclude)
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


_UNSET = object()


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any],
                exclude: Iterable[str] = EXCLUDED) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every fingerprinted key that differs (unset on one side = ``<unset>``)."""
    a, b = flatten(old, exclude), flatten(new, exclude)
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, _UNSET), b.get(k, _UNSET)
        if va != vb:
            out.append((k, va, vb))
    return out


def _show(v: Any, width: int = 80) -> str:
    s = "<unset>" if v is _UNSET else json.dumps(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def saved_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The config a directory's run was made with: ``config.json``, else its newest checkpoint's (None: no run)."""
    run_dir = Path(run_dir)
    cands = [run_dir / CONFIG_FILE]
    steps = sorted((p for p in (run_dir / "checkpoints").glob("step_*") if p.name[5:].isdigit()),
                   key=lambda p: int(p.name[5:]), reverse=True)
    cands += [p / CONFIG_FILE for p in steps]
    for c in cands:
        try:
            return json.loads(c.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return None


def mismatch_message(run_dir: str | Path, diff: list[tuple[str, Any, Any]], old_fp: str, new_fp: str) -> str:
    lines = "\n".join(f"  {k}: {_show(a)} → {_show(b)}" for k, a, b in diff)
    return (f"{run_dir} holds a run made with another config (fingerprint {old_fp} → {new_fp}); "
            f"{len(diff)} setting(s) differ:\n{lines}\n"
            "Resuming or reusing it would mix two runs, so nothing was changed. Use another run directory, "
            "restore these settings, or pass --fresh (fresh=true) to delete this run's contents and train from scratch.")


def clear_run_dir(run_dir: str | Path, keep: Iterable[str] = ()) -> None:
    """Remove everything inside ``run_dir`` except the entries named in ``keep`` (e.g. the lock file)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    keep = set(keep)
    for p in run_dir.iterdir():
        if p.name in keep:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def bind_run_dir(run_dir: str | Path, config: Mapping[str, Any], fresh: bool = False,
                 keep: Iterable[str] = ()) -> bool:
    """Bind ``run_dir`` to ``config``; True when it already held a run of the same fingerprint.

    A new (or ``fresh``: cleared, except ``keep``) directory gets ``config.json``; a directory of the
    same config is left as it is (its ``config.json`` is the run's provenance and is not rewritten);
    another config raises :class:`RunConfigMismatchError`."""
    run_dir = Path(run_dir)
    if fresh:
        clear_run_dir(run_dir, keep)
    old = None if fresh else saved_config(run_dir)
    if old is not None:
        diff = config_diff(old, config)
        if diff:
            raise RunConfigMismatchError(mismatch_message(run_dir, diff, fingerprint(old), fingerprint(config)))
        if (run_dir / CONFIG_FILE).is_file():
            return True
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG_FILE, _plain(config))
    return old is not None


def writable_problem(path: str | Path, key: str = "output_dir") -> str | None:
    """Why ``path`` (created later by the run) cannot be written, else None. Probes the nearest existing
    folder with a temporary file and removes it; creates no directory. ``key`` names the setting to change."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{key} {path} cannot be created: {probe} is a file, not a directory; set {key} elsewhere"
    try:
        fd, name = tempfile.mkstemp(prefix=".mvlpt-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        return f"{key} {path} is not writable ({probe}: {e.strerror or e}); set {key} to a writable folder"
    return None
