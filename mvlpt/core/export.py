"""What the heads' pretraining wings share when they export weights: where the export goes and which
commit made it.

* :func:`resolve_export_dir` — a recipe's ``export_dir``: ``""`` = no export, ``package`` = the head's
  shipped weights folder (given by the caller), anything else = that path.
* :func:`commit_record` — ``{"commit": HEAD or None, "dirty": bool or None}`` for an export's
  ``metadata.json``, from :func:`mvlpt.core.provenance.git_commit` (the one place that asks git; dirty =
  uncommitted changes to tracked files).
* :func:`run_commit_record` / :func:`export_commit_record` — the commit a pretraining run *started* at
  (``<run_dir>/started.json``, written at its first start, kept when it resumes), which the export
  records rather than HEAD at export time (code committed while a run trains did not train it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .provenance import git_commit

#: the ``export_dir`` value that means "the head's shipped weights folder"
PACKAGE = "package"
#: the file in a pretraining run directory that records the commit the run started at
STARTED_FILE = "started.json"


def resolve_export_dir(value: str | None, package_dir: str | Path) -> Path | None:
    """``None`` for ``""`` / ``None`` (no export), ``package_dir`` for ``package``, else ``Path(value)``."""
    if not value:
        return None
    return Path(package_dir) if value == PACKAGE else Path(value)


def commit_record() -> dict[str, Any]:
    """``{"commit": HEAD, "dirty": bool}`` of the checkout holding this package; ``None`` values outside git."""
    head = git_commit()
    if head is None:
        return {"commit": None, "dirty": None}
    dirty = head.endswith("-dirty")
    return {"commit": head[: -len("-dirty")] if dirty else head, "dirty": dirty}


def _recorded_start(run_dir: str | Path) -> dict[str, Any] | None:
    """``run_dir``'s ``started.json``, or ``None`` when the run recorded no start."""
    path = Path(run_dir) / STARTED_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_commit_record(run_dir: str | Path) -> dict[str, Any]:
    """The commit ``run_dir``'s training started at: :func:`commit_record` written to ``started.json`` at the
    run's first start, read back (unchanged) when the run resumes."""
    started = _recorded_start(run_dir)
    if started is not None:
        return started
    record = commit_record()
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / STARTED_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def export_commit_record(run_dir: str | Path) -> dict[str, Any]:
    """The commit fields of an export's ``metadata.json``: ``commit`` / ``dirty`` of the run's start (HEAD now
    when the run recorded none), plus ``export_commit`` / ``export_dirty`` when the export is made elsewhere."""
    now = commit_record()
    started = _recorded_start(run_dir)
    if started is None:
        return now
    if started == now:
        return started
    return {**started, "export_commit": now["commit"], "export_dirty": now["dirty"]}
