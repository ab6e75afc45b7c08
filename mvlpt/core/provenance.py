"""Where a result comes from: the git commit of the code and the config fingerprint, for results tables."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the repository holding this package (``-dirty`` with uncommitted changes), None outside git."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True,  # noqa: E731
                                        check=True, timeout=30).stdout.strip()
        head = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "") if head else None


def provenance_line(fingerprint: str | None) -> str:
    """``config fingerprint `…` · git commit `…```: the line results tables end with."""
    return f"config fingerprint `{fingerprint or 'unknown'}` · git commit `{git_commit() or 'unknown'}`"
