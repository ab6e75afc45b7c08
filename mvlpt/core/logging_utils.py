"""Metrics as JSON Lines (and TensorBoard when installed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable


class MetricsLogger:
    """Appends ``{"step", "split", ...metrics}`` lines to ``run_dir/metrics.jsonl``."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = False):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except Exception:  # tensorboard not installed: JSONL only
                self._tb = None

    def log(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "split": split}
        row.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{split}/{k}", v, step)

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after ``step`` (used on resume, so the file equals an uninterrupted run's)."""
        self._keep(lambda row: row.get("step", 0) <= step)

    def drop(self, step: int, split: str) -> None:
        """Remove the lines of ``split`` at ``step`` (before logging them again)."""
        self._keep(lambda row: (row.get("step"), row.get("split")) != (step, split))

    def _keep(self, keep_row: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite the file with the rows ``keep_row`` accepts (lines cut by a crash are dropped)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if keep_row(row):
                keep.append(line)
        self.path.write_text("".join(l + "\n" for l in keep))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All metric rows of a run."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
