"""Few-shot results: per-run rows → mean ± std per method and shot count, as a table and a plot.

Rows are plain dicts with at least ``method``, ``shots``, ``seed`` and the metric (a percentage,
as the task models report it, e.g. ``accuracy``; base-to-new runs also carry ``base``, ``new``
and ``hm``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from mvlpt.core.results import mean_std, write_table

RUNS_FILE = "runs.jsonl"


def harmonic_mean(a: float, b: float) -> float:
    """Harmonic mean of two accuracies (0 when either is 0), as in CoOp's base-to-new protocol."""
    return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows appended by :func:`append_row` (a missing file is an empty list; a torn last line is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by an interruption: that cell is simply run again
    return rows


def append_row(path: str | Path, row: dict[str, Any]) -> None:
    """Append one finished run as a JSON line (flushed, so an interrupted sweep keeps it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def _ordered(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def summarize(rows: Sequence[dict[str, Any]], metric: str = "accuracy") -> list[dict[str, Any]]:
    """``{"method", "shots", "mean", "std", "n"}`` per (method, shots), in first-seen order."""
    out = []
    for method in _ordered(r["method"] for r in rows):
        for shots in sorted(_ordered(r["shots"] for r in rows if r["method"] == method)):
            vals = [float(r[metric]) for r in rows if r["method"] == method and r["shots"] == shots and metric in r]
            if vals:
                m, s = mean_std(vals)
                out.append({"method": method, "shots": shots, "mean": m, "std": s, "n": len(vals)})
    return out


def _cell(m: float, s: float, n: int) -> str:
    if math.isnan(m):
        return "—"
    return f"{m:.1f} ± {s:.1f}" if n > 1 else f"{m:.1f}"


def pivot(summary: Sequence[dict[str, Any]], shots: Sequence[int]) -> list[dict[str, Any]]:
    """One row per method, one ``K=<k>`` column per shot count: ``"mean ± std"``.
    A method evaluated without training (``shots == 0``, zero-shot) fills every column."""
    rows = []
    for method in _ordered(s["method"] for s in summary):
        cells = {s["shots"]: s for s in summary if s["method"] == method}
        row: dict[str, Any] = {"method": method}
        for k in shots:
            c = cells.get(k, cells.get(0))
            row[f"K={k}"] = _cell(c["mean"], c["std"], c["n"]) if c else "—"
        rows.append(row)
    return rows


def write_results(rows: Sequence[dict[str, Any]], out_dir: str | Path, shots: Sequence[int],
                  metric: str = "accuracy", title: str = "", note: str = "") -> dict[str, Path]:
    """Write ``runs.csv`` (one line per run, with the ``split`` its metric is on and, for trained
    runs, ``selected_on`` = ``val`` / ``last step`` and ``best_step``), ``results.md``/``results.csv``
    (mean ± std table; ``note`` — e.g. the reported split and how checkpoints were selected — is
    appended to the markdown title) and ``results.png`` (accuracy vs shots, one line per method).
    Returns the paths."""
    out_dir = Path(out_dir)
    run_cols = ["method", "stage", "prompt", "shots", "seed", metric]
    extra = [c for c in ("split", "selected_on", "best_step", "base", "new", "hm", "steps", "time_s", "run_dir")
             if any(c in r for r in rows) and c != metric]
    _, runs_csv = write_table(rows, out_dir / "runs", columns=run_cols + extra)
    summary = summarize(rows, metric)
    md_title = (title + note) if title else note.lstrip(" —;")
    md, csv = write_table(pivot(summary, shots), out_dir / "results", title=md_title or None)
    png = plot_results(summary, out_dir / "results.png", shots, metric, title)
    return {"runs_csv": runs_csv, "table_md": md, "table_csv": csv, "plot": png}


def plot_results(summary: Sequence[dict[str, Any]], path: str | Path, shots: Sequence[int],
                 metric: str = "accuracy", title: str = "") -> Path:
    """The metric (%) against shots (log₂ axis), one line with a ±std band per method; methods
    without training (``shots == 0``) are drawn as dashed horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    xs_all = sorted(set(shots))
    for i, method in enumerate(_ordered(s["method"] for s in summary)):
        cells = sorted((s for s in summary if s["method"] == method), key=lambda s: s["shots"])
        color = f"C{i % 10}"
        if all(c["shots"] == 0 for c in cells):
            ax.axhline(cells[0]["mean"], ls="--", color=color, label=method)
            continue
        cells = [c for c in cells if c["shots"] > 0]
        x = [c["shots"] for c in cells]
        y = [c["mean"] for c in cells]
        sd = [c["std"] for c in cells]
        ax.plot(x, y, marker="o", color=color, label=method)
        ax.fill_between(x, [a - b for a, b in zip(y, sd)], [a + b for a, b in zip(y, sd)], color=color, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs_all)
    ax.set_xticklabels([str(k) for k in xs_all])
    ax.set_xlabel("shots per class (K)")
    ax.set_ylabel(f"{metric} (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
