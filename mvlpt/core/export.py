"""What the heads' pretraining wings share when they export weights: where the export goes and which
commit made it.

* :func:`resolve_export_dir` — a recipe's ``export_dir``: ``""`` = no export, ``package`` = the head's
  shipped weights folder (given by the caller), anything else = that path.
* :func:`commit_record` — ``{"commit": HEAD or None, "dirty": bool or None}`` for an export's
  ``metadata.json``, from :func:`mvlpt.core.provenance.git_commit` (the one place that asks git; dirty =
  uncommitted changes to tracked files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .provenance import git_commit

#: the ``export_dir`` value that means "the head's shipped weights folder"
PACKAGE = "package"


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
