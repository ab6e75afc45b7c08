"""Health checks of trained prompts: catch a broken stage before the next one consumes it.

A prompt is flagged when

* a task's accuracy is at most chance plus a margin (``chance_margin`` points of percent),
* its class-text features have collapsed (mean pairwise cosine above ``collapse_cos``: every
  class name maps to nearly the same text feature, so the prompt cannot tell classes apart), or
* its token norm exceeds ``max_norm_ratio`` times the backbone's own token norm (the prompt left
  the scale of the backbone's inputs; see :mod:`.mechanism`).

The loop checks every stage at its end and writes ``health.json`` into the run directory;
:func:`check_consumed_run` reads it before a stage uses a teacher or source run. Problems are
warnings in the log and the results; ``strict`` makes them a :class:`HealthCheckError`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, MVLPTError

HEALTH_FILE = "health.json"


class HealthCheckError(MVLPTError, RuntimeError):
    """A trained prompt failed a health check and ``strict`` is on."""


class HealthWarning(UserWarning):
    """A trained prompt failed a health check (not strict)."""


@dataclass
class HealthConfig:
    """Thresholds of the health checks.

    Attributes:
        enabled: run the checks at the end of every stage.
        strict: turn a failed check (this stage's, or a consumed teacher/source run's) into an error.
        chance_margin: accuracy must exceed chance by more than this many points of percent.
        collapse_cos: mean pairwise cosine of a task's class-text features above which they count as collapsed.
        max_norm_ratio: largest allowed prompt token norm over the backbone's token norm.
    """

    enabled: bool = True
    strict: bool = False
    chance_margin: float = 2.0
    collapse_cos: float = 0.98
    max_norm_ratio: float = 5.0

    def validate(self) -> None:
        if self.chance_margin < 0:
            raise ConfigError(f"train.health.chance_margin must be >= 0, found {self.chance_margin}")
        if not 0 < self.collapse_cos <= 1:
            raise ConfigError(f"train.health.collapse_cos must be in (0, 1], found {self.collapse_cos}")
        if self.max_norm_ratio <= 0:
            raise ConfigError(f"train.health.max_norm_ratio must be > 0, found {self.max_norm_ratio}")


def find_problems(metrics: Mapping[str, float], chance: Mapping[str, float], metric_scale: float,
                  diagnostics: Mapping[str, float], mechanism: Mapping[str, float], cfg: HealthConfig,
                  diagnostics_start: Mapping[str, float] | None = None) -> list[str]:
    """Readable problems found in a stage's final evaluation, diagnostics and mechanism figures.

    Args:
        metrics: evaluation metrics (``"<task>/accuracy"``, ...).
        chance: chance level per metric key (same units as ``metrics``); when ``metrics`` also
            holds ``"<task>/majority"`` (the most frequent label's share), the higher of the two counts.
        metric_scale: 100 when accuracies are percentages, 1 when fractions.
        diagnostics: head figures, e.g. ``"<task>/class_text_cos"``.
        mechanism: :func:`mvlpt.core.mechanism.mechanism_stats` output.
        diagnostics_start: the same figures at the start of the run (to tell a collapse caused by
            training from class names the backbone cannot tell apart in the first place).
    """
    problems = []
    margin = cfg.chance_margin / 100.0 * metric_scale
    for key, c in chance.items():
        v = metrics.get(key)
        majority = metrics.get(key.rsplit("/", 1)[0] + "/majority")  # share of the most frequent label
        if majority is not None and majority == majority:
            c = max(c, majority)
        if v is not None and v == v and v <= c + margin:
            problems.append(f"{key} = {v:.4g} is at chance (chance {c:.4g}, margin {margin:.3g}): "
                            "the prompt did not learn this task")
    for key, v in diagnostics.items():
        if key.endswith("/class_text_cos") and v > cfg.collapse_cos:
            task = key.rsplit("/", 1)[0]
            start = (diagnostics_start or {}).get(key)
            why = ("every class maps to nearly the same text feature — the learning rate is likely too high"
                   if start is None or start <= cfg.collapse_cos else
                   f"they were already {start:.4f} at the start: the backbone's text tower barely tells these class "
                   "names apart (a backbone limit, not the prompt's)")
            was = f", {start:.4f} at the start" if start is not None else ""
            problems.append(f"{task}: class-text features collapsed (mean pairwise cosine {v:.4f} > {cfg.collapse_cos}"
                            f"{was}); {why}")
    for key, v in mechanism.items():
        if key.endswith("/norm_ratio") and v > cfg.max_norm_ratio:
            module = key.split("/")[1]
            problems.append(f"{module}: prompt token norm is {v:.2f}x the backbone's token norm (> {cfg.max_norm_ratio}); "
                            "lower the learning rate (or train.optim.group_lr.task_factors)")
    return problems


def report(problems: list[str], where: str, strict: bool) -> None:
    """Warn about ``problems`` (or raise :class:`HealthCheckError` when ``strict``)."""
    if not problems:
        return
    text = f"health check of {where}:\n  - " + "\n  - ".join(problems)
    if strict:
        raise HealthCheckError(text + "\n(strict: set train.health.strict=false to continue with a warning)")
    warnings.warn(text, HealthWarning, stacklevel=2)


def write_health(run_dir: str | Path, problems: list[str], checked: Mapping[str, Any]) -> Path:
    """``health.json``: ``{"ok", "problems", "checked"}``."""
    path = Path(run_dir) / HEALTH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ok": not problems, "problems": problems, "checked": dict(checked)}, indent=2) + "\n")
    return path


def read_health(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``health.json`` (None when it has none, e.g. an older run)."""
    path = Path(run_dir)
    for cand in [path / HEALTH_FILE] + [p / HEALTH_FILE for p in list(path.parents)[:3]]:
        if cand.is_file():
            try:
                return json.loads(cand.read_text())
            except json.JSONDecodeError:
                return None
    return None


def check_consumed_run(run_dir: str | Path, what: str, strict: bool) -> list[str]:
    """Before a stage consumes a ``what`` run (``teacher run``, ``source run``): report its recorded problems."""
    found = read_health(run_dir)
    if not found or found.get("ok", True):
        return []
    problems = list(found.get("problems", []))
    report(problems, f"the {what} {run_dir} (recorded when it was trained)", strict)
    return problems


def readable_warnings() -> None:
    """Command lines: show health warnings as ``WARNING: ...`` lines on stderr (no source line), every time."""
    import sys

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, HealthWarning):
            print(f"WARNING: {message}", file=file or sys.stderr, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", HealthWarning)


def add_problems(run_dir: str | Path, problems: list[str], checked: Mapping[str, Any], strict: bool) -> None:
    """Add a head's own findings (e.g. teachers vs zero-shot) to the run's ``health.json`` and report them."""
    if not problems and not checked:
        return
    found = read_health(run_dir) if (Path(run_dir) / HEALTH_FILE).is_file() else None
    old = list((found or {}).get("problems", []))
    merged = {**(found or {}).get("checked", {}), **dict(checked)}
    write_health(run_dir, old + problems, merged)
    report(problems, f"this run ({run_dir})", strict)
