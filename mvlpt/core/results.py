"""Readable results: rows of dicts as a markdown table and a CSV, and mean ± std summaries.

The one home of results writing for both heads: :func:`write_table` (any rows → ``<stem>.md`` /
``<stem>.csv``), :func:`per_task_rows` (``{"<task>/<metric>": v}`` → one row per task) and
:func:`write_run_results` (a run's ``results.md`` / ``results.csv``). The CLIP sweep's summary files
(``runs.csv``, mean ± std, paired differences, plot) are :func:`mvlpt.clip.pipeline.report.write_sweep_results`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


def _fmt(v: Any, digits: int) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.{digits}f}"
    return "" if v is None else str(v)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A GitHub markdown table of ``rows`` (columns default to the keys in first-seen order)."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[dict[str, Any]], stem: str | Path, columns: Sequence[str] | None = None,
                title: str | None = None, digits: int = 4, provenance: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.csv``; return both paths. ``provenance`` (config fingerprint and git
    commit, :func:`mvlpt.core.provenance.provenance_line`) goes under the markdown table."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md = markdown_table(rows, columns, digits)
    md_path, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
    md_path.write_text((f"# {title}\n\n" if title else "") + md + (f"\n{provenance}\n" if provenance else ""))
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return md_path, csv_path


#: a run's results files: ``<run_dir>/results.md`` and ``results.csv``
RESULTS = "results"


def per_task_rows(metrics: Mapping[str, Any], names: Sequence[str], head: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """``{"<task>/<metric>": v}`` → one row per task in ``names``: ``{"task", **head, <metric>: v, ...}``
    (``head``: columns every row starts with, e.g. the split and step its numbers come from)."""
    rows = []
    for name in names:
        row: dict[str, Any] = {"task": name, **(head or {})}
        prefix = f"{name}/"
        row.update({k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)})
        rows.append(row)
    return rows


def write_run_results(run_dir: str | Path, rows: Sequence[dict[str, Any]], title: str | None = None,
                      columns: Sequence[str] | None = None, notes: Sequence[str] = (),
                      provenance: str | None = None) -> tuple[Path, Path]:
    """A run's ``results.md`` / ``results.csv`` (:func:`write_table` of ``rows``); ``provenance`` goes under the
    markdown table, then ``notes`` as a list. Returns both paths."""
    md, csv_path = write_table(rows, Path(run_dir) / RESULTS, columns=columns, title=title, provenance=provenance)
    if notes:
        md.write_text(md.read_text() + "\n" + "".join(f"- {n}\n" for n in notes))
    return md, csv_path


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def append_run_health(md_path: str | Path, run_dir: str | Path) -> None:
    """Append the run's MPT mechanism figures (``mechanism.json``) and health-check result (``health.json``),
    both written by the training loop, to a results markdown file."""
    import json

    run_dir, md_path = Path(run_dir), Path(md_path)
    parts = []
    mech_path, health_path = run_dir / "mechanism.json", run_dir / "health.json"
    if mech_path.is_file():
        mech = json.loads(mech_path.read_text())
        rows = [{"figure": k.removeprefix("mech/"), "value": v} for k, v in mech.items() if k.startswith("mech/")]
        if rows:
            parts.append(f"## MPT mechanism (step {mech.get('step')})\n\nfactor_dev / prompt_dev: relative change of each "
                         "task's U Vᵀ (or vanilla prompt) since the start of the run; pairwise_dist: mean ‖P_i − P_j‖ / "
                         "mean ‖P‖ over task pairs (_init: at the start); norm_ratio: prompt token norm / the "
                         "backbone's token norm.\n\n" + markdown_table(rows, ["figure", "value"]))
    if health_path.is_file():
        health = json.loads(health_path.read_text())
        problems = health.get("problems", [])
        body = "all checks passed" if not problems else "\n".join(f"- WARNING: {p}" for p in problems)
        parts.append(f"## Health checks\n\n{body}\n")
    if parts and md_path.is_file():
        with md_path.open("a") as f:
            f.write("\n" + "\n".join(parts))
