"""Helpers of the tests that run, stop and resume the toy training (in process or as a child process)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = str(Path(__file__).with_name("toy_train.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TIMEOUT = 900  # a hang guard only: tests synchronise on files written by the child, never on the clock


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    """Block until the child wrote ``path`` (it then waits for our signal); fail if it exited first."""
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        assert proc.poll() is None, f"child exited with {proc.returncode} before {path.name}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {path} after {TIMEOUT} s"
        time.sleep(0.02)


def stop_after(trainer, n: int) -> None:
    """Train until step ``n`` and stop as a kill would (the checkpoint at ``n`` exists)."""
    original = trainer._train_step

    def step(*a, **k):
        if trainer.step >= n:
            raise SystemExit
        return original(*a, **k)

    trainer._train_step = step
    with pytest.raises(SystemExit):
        trainer.fit()


def strip_elapsed(rows: list[dict]) -> list[dict]:
    """Metrics rows without their wall-clock field (for comparing two runs)."""
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]
