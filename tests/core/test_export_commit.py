"""mvlpt.core.export: an export records the commit its pretraining run started at, not HEAD at export time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mvlpt.core import export


def _head(monkeypatch: pytest.MonkeyPatch, commit: str, dirty: bool = False) -> None:
    monkeypatch.setattr(export, "git_commit", lambda: commit + ("-dirty" if dirty else ""))


def test_the_start_is_recorded_once_and_kept_when_the_run_resumes(tmp_path: Path, monkeypatch):
    _head(monkeypatch, "aaa")
    assert export.run_commit_record(tmp_path / "run") == {"commit": "aaa", "dirty": False}
    _head(monkeypatch, "bbb", dirty=True)  # resumed later, at another commit
    assert export.run_commit_record(tmp_path / "run") == {"commit": "aaa", "dirty": False}
    assert json.loads((tmp_path / "run" / export.STARTED_FILE).read_text())["commit"] == "aaa"


def test_an_export_names_the_start_and_says_when_it_was_made_elsewhere(tmp_path: Path, monkeypatch):
    _head(monkeypatch, "aaa")
    export.run_commit_record(tmp_path)
    assert export.export_commit_record(tmp_path) == {"commit": "aaa", "dirty": False}
    _head(monkeypatch, "ccc", dirty=True)
    assert export.export_commit_record(tmp_path) == {"commit": "aaa", "dirty": False,
                                                     "export_commit": "ccc", "export_dirty": True}
    # a run directory without a recorded start (made before started.json existed): HEAD now
    assert export.export_commit_record(tmp_path / "old") == {"commit": "ccc", "dirty": True}
