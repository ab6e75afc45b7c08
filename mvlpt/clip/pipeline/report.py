"""Few-shot results: per-run rows → mean ± std per method and shot count, as a table and a plot,
and paired differences (multitask − baseline on the same K and seed) with bootstrap CIs.

Rows are plain dicts with at least ``method``, ``shots``, ``seed`` and the metric (a percentage,
as the task models report it, e.g. ``accuracy``; base-to-new runs also carry ``base``, ``new``
and ``hm``; sweep rows also carry ``stage`` and ``prompt``, from which the default pairs come).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from mvlpt.core.results import markdown_table, mean_std, write_table
from mvlpt.core.stats import ABOVE, BELOW, paired_summary

#: bootstrap settings of the paired table
N_BOOT, LEVEL, BOOT_SEED = 10000, 0.95, 0

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


def pivot(summary: Sequence[dict[str, Any]], shots: Sequence[int],
          labels: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """One row per method, one ``K=<k>`` column per shot count: ``"mean ± std"``.
    A method evaluated without training (``shots == 0``, zero-shot) fills every column.
    ``labels``: column names by K (:func:`k_columns`: ``K=24 (of 32)`` when fewer shots were used)."""
    labels = labels or {}
    rows = []
    for method in _ordered(s["method"] for s in summary):
        cells = {s["shots"]: s for s in summary if s["method"] == method}
        row: dict[str, Any] = {"method": method}
        for k in shots:
            c = cells.get(k, cells.get(0))
            row[labels.get(k, f"K={k}")] = _cell(c["mean"], c["std"], c["n"]) if c else "—"
        rows.append(row)
    return rows


def with_run_data(row: dict[str, Any]) -> dict[str, Any]:
    """A sweep row plus, from its run's ``data.json``, ``k_used`` (the K trained with), ``n_scored``
    (evaluation images scored) and ``unreadable`` (evaluation images skipped); unchanged without one."""
    if "n_scored" in row:
        return row
    data = read_data(row.get("run_dir"))
    if not data:
        return row
    d = next(iter(data.values()))
    ev = d.get("splits", {}).get(str(row.get("split", "test")), {})
    out = dict(row)
    if d.get("shots_requested"):
        out["k_used"] = d["shots"]
    if "scored" in ev:
        out["n_scored"] = ev["scored"]
    out["unreadable"] = ev.get("unreadable", 0)
    return out


def k_columns(rows: Sequence[dict[str, Any]], shots: Sequence[int]) -> dict[int, str]:
    """Column name per K: ``K=32``, or ``K=24 (of 32)`` when every run of K=32 trained with 24 shots."""
    out = {}
    for k in shots:
        used = {int(r["k_used"]) for r in rows if r.get("shots") == k and "k_used" in r}
        out[k] = f"K={k_label(used.pop(), k)}" if len(used) == 1 else f"K={k}"
    return out


def _span(values: Sequence[int]) -> str:
    vals = sorted(set(values))
    return "—" if not vals else str(vals[0]) if len(vals) == 1 else f"{vals[0]}–{vals[-1]}"


def scored_by_method(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Per method: ``images (n)`` (evaluation images scored per run) and ``unreadable`` (skipped), as text."""
    out = {}
    for method in _ordered(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out[method] = {"images (n)": _span([int(r["n_scored"]) for r in mine if "n_scored" in r]),
                       "unreadable": _span([int(r["unreadable"]) for r in mine if "unreadable" in r])}
    return out


def with_n(table: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]], shots: Sequence[int]) -> list[dict[str, Any]]:
    """:func:`pivot` rows plus an ``n`` column: runs per cell (one number when every K has the same
    count, else the counts in K order joined by ``/``, e.g. ``5/3/3``)."""
    out = []
    for row in table:
        cells = {s["shots"]: s["n"] for s in summary if s["method"] == row["method"]}
        ns = [cells.get(k, cells.get(0, 0)) for k in shots]
        out.append({**row, "n": str(ns[0]) if len(set(ns)) == 1 else "/".join(map(str, ns))})
    return out


def default_pairs(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(multitask, baseline)`` from the rows' ``stage`` / ``prompt``: each ``target`` method with the
    first ``single`` method of the same prompt method (when there is one)."""
    stage = {r["method"]: r.get("stage") for r in rows}
    prompt = {r["method"]: r.get("prompt") for r in rows}
    singles = [m for m in stage if stage[m] == "single"]
    out = []
    for m in stage:
        if stage[m] == "target":
            b = next((s for s in singles if prompt[s] == prompt[m]), None)
            if b is not None:
                out.append((m, b))
    return out


def paired_rows(rows: Sequence[dict[str, Any]], pairs: Sequence[tuple[str, str]], shots: Sequence[int],
                metric: str = "accuracy", n_boot: int = N_BOOT, level: float = LEVEL,
                seed: int = BOOT_SEED) -> list[dict[str, Any]]:
    """One :func:`mvlpt.core.stats.paired_summary` per pair and K (pairs on the seed), with ``shots``
    first; a pair / K with no rows of either method is left out."""
    out = []
    for t, b in pairs:
        for k in shots:
            sub = [r for r in rows if r.get("shots") == k and r.get("method") in (t, b)]
            if not sub:
                continue
            out.append({"shots": k, **paired_summary(sub, t, b, metric, ("shots", "seed"), n_boot=n_boot,
                                                     level=level, seed=seed)})
    return out


def _signed(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:+.1f}"


def paired_markdown(paired: Sequence[dict[str, Any]], metric: str = "accuracy", heading: str = "##") -> str:
    """The paired-difference table (markdown, with its heading and a legend); empty without pairs."""
    if not paired:
        return ""
    level = paired[0].get("level", LEVEL)
    rows = []
    for p in paired:
        n = p["n"]
        ci = "—" if n < 2 else f"[{_signed(p['ci_low'])}, {_signed(p['ci_high'])}]"
        wins = f"{p['wins']}/{n}" + (f" ({p['unpaired']} unpaired)" if p.get("unpaired") else "")
        rows.append({"multitask": p["treatment"], "baseline": p["baseline"], "K": p["shots"],
                     "multitask mean": "—" if not n else f"{p['mean_treatment']:.1f}",
                     "baseline mean": "—" if not n else f"{p['mean_baseline']:.1f}",
                     "Δ mean": (_signed(p["diff"]) + (f" {p['verdict']}" if p["verdict"] else "")),
                     f"{level:.0%} CI": ci, "wins/n": wins})
    legend = (f"Δ: mean over seeds of (multitask − baseline) {metric} on the same K and seed (points); "
              f"{level:.0%} CI: percentile bootstrap of that mean ({N_BOOT:,} resamples of the seeds); "
              f"{ABOVE} / {BELOW}: the CI lies entirely above / below 0 (shown from 2 pairs on); wins/n: "
              "seeds where the multitask run scores higher. With 3 seeds the bootstrap interval is coarse.")
    return f"{heading} Paired differences: multitask − baseline\n\n{legend}\n\n" + markdown_table(rows)


def write_paired_csv(paired: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """``paired.csv``: one line per pair and K, numbers unformatted."""
    path = Path(path)
    cols = ["treatment", "baseline", "shots", "n", "mean_treatment", "mean_baseline", "diff", "ci_low", "ci_high",
            "level", "wins", "losses", "ties", "unpaired", "verdict"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(paired)
    return path


def write_sweep_results(rows: Sequence[dict[str, Any]], out_dir: str | Path, shots: Sequence[int],
                        metric: str = "accuracy", title: str = "", note: str = "",
                        pairs: Sequence[tuple[str, str]] | None = None, provenance: str | None = None) -> dict[str, Path]:
    """A sweep's summary files (one run's own ``results.md`` is :func:`mvlpt.core.results.write_run_results`).

    Write ``runs.csv`` (one line per run, with the ``split`` its metric is on and, for trained
    runs, ``selected_on`` = ``val`` / ``last step`` and ``best_step``), ``results.md``/``results.csv``
    (mean ± std table with ``n`` = runs per cell; ``note`` — e.g. the reported split and how
    checkpoints were selected — is appended to the markdown title; then, in ``results.md``, the
    paired-difference table of ``pairs`` = ``(multitask, baseline)`` method names, default
    :func:`default_pairs`), ``paired.csv`` (that table in numbers) and ``results.png`` (the metric vs
    shots, one line per method; a second panel with the paired differences and their CIs).
    ``provenance`` (config fingerprint, git commit) goes under the results table; each run's own are
    the ``config_fingerprint`` / ``git_commit`` columns of ``runs.csv``. Returns the paths."""
    out_dir = Path(out_dir)
    rows = [with_run_data(r) for r in rows]
    run_cols = ["method", "stage", "prompt", "shots", "seed", metric]
    extra = [c for c in ("k_used", "n_scored", "unreadable", "split", "selected_on", "best_step", "base", "new", "hm",
                         "steps", "time_s", "run_dir", "config_fingerprint", "git_commit")
             if any(c in r for r in rows) and c != metric]
    _, runs_csv = write_table(rows, out_dir / "runs", columns=run_cols + extra)
    summary = summarize(rows, metric)
    md_title = (title + note) if title else note.lstrip(" —;")
    labels = k_columns(rows, shots)
    scored = scored_by_method(rows)
    table = [{**r, **scored.get(r["method"], {})}
             for r in with_n(pivot(summary, shots, labels), summary, shots)]
    md, table_csv = write_table(table, out_dir / "results", title=md_title or None, provenance=provenance)
    with md.open("a") as f:
        fewer = [lab for lab in labels.values() if "(of " in str(lab)]
        f.write("\nn: runs per cell; images (n): evaluation images scored per run (unreadable ones are skipped, "
                "counted under unreadable)"
                + (f"; {fewer[0]}: the runs trained with fewer shots per class than asked, the most the smallest "
                   "class has (data.if_too_few=largest)" if fewer else "") + ".\n")
    paired = paired_rows(rows, default_pairs(rows) if pairs is None else pairs, shots, metric)
    if paired:
        with md.open("a") as f:
            f.write("\n" + paired_markdown(paired, metric))
    paired_csv = write_paired_csv(paired, out_dir / "paired.csv")
    png = plot_results(summary, out_dir / "results.png", shots, metric, title, paired=paired,
                       labels={k: v[2:] for k, v in labels.items()},
                       scored={m: v["images (n)"] for m, v in scored.items()})
    return {"runs_csv": runs_csv, "table_md": md, "table_csv": table_csv, "paired_csv": paired_csv, "plot": png}


def plot_results(summary: Sequence[dict[str, Any]], path: str | Path, shots: Sequence[int],
                 metric: str = "accuracy", title: str = "", paired: Sequence[dict[str, Any]] = (),
                 labels: dict[int, str] | None = None, scored: dict[str, str] | None = None) -> Path:
    """The metric (%) against shots (log₂ axis), one line with a ±std band per method; methods
    without training (``shots == 0``) are drawn as dashed horizontal lines. ``labels``: tick text per
    K (``24 (of 32)``); ``scored``: evaluation images per method, shown in the legend (``n=…``). With ``paired``
    (:func:`paired_rows`), a second panel: the mean paired difference per pair against K, its CI as
    error bars, and a zero line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if paired:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    else:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        ax2 = None
    xs_all = sorted(set(shots))
    labels, scored = labels or {}, scored or {}
    for i, method in enumerate(_ordered(s["method"] for s in summary)):
        cells = sorted((s for s in summary if s["method"] == method), key=lambda s: s["shots"])
        color = f"C{i % 10}"
        n_txt = scored.get(method, "—")
        name = method if n_txt == "—" else f"{method} (n={n_txt})"
        if all(c["shots"] == 0 for c in cells):
            ax.axhline(cells[0]["mean"], ls="--", color=color, label=name)
            continue
        cells = [c for c in cells if c["shots"] > 0]
        x = [c["shots"] for c in cells]
        y = [c["mean"] for c in cells]
        sd = [c["std"] for c in cells]
        ax.plot(x, y, marker="o", color=color, label=name)
        ax.fill_between(x, [a - b for a, b in zip(y, sd)], [a + b for a, b in zip(y, sd)], color=color, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs_all)
    ax.set_xticklabels([labels.get(k, str(k)) for k in xs_all])
    ax.set_xlabel("shots per class (K)")
    ax.set_ylabel(f"{metric} (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if ax2 is not None:
        _plot_paired(ax2, paired, xs_all, metric)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_paired(ax, paired: Sequence[dict[str, Any]], xs_all: Sequence[int], metric: str) -> None:
    """Mean paired difference vs K per pair, CI error bars (pairs side by side around each K), zero line."""
    names = list(dict.fromkeys((p["treatment"], p["baseline"]) for p in paired))
    width = 0.08  # spread of the pairs around each K, in log₂ units
    for i, (t, b) in enumerate(names):
        pts = [p for p in paired if (p["treatment"], p["baseline"]) == (t, b) and p["n"] > 0]
        if not pts:
            continue
        off = (i - (len(names) - 1) / 2) * width
        x = [p["shots"] * 2 ** off for p in pts]
        y = [p["diff"] for p in pts]
        lo = [max(0.0, p["diff"] - p["ci_low"]) if p["n"] > 1 else 0.0 for p in pts]
        hi = [max(0.0, p["ci_high"] - p["diff"]) if p["n"] > 1 else 0.0 for p in pts]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, color=f"C{i % 10}", label=f"{t} − {b}")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs_all)
    ax.set_xticklabels([str(k) for k in xs_all])
    ax.set_xlabel("shots per class (K)")
    level = paired[0].get("level", LEVEL)
    ax.set_ylabel(f"Δ {metric} (points)")
    ax.set_title(f"paired difference, {level:.0%} bootstrap CI over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


# --------------------------------------------------------------------------------------------
# data integrity of one run: data.json, the per-task columns and the "Data" section of results.md

DATA_FILE = "data.json"


def k_label(used: int, asked: int) -> str:
    """``"24 (of 32)"`` when fewer shots were used than asked for, else ``"32"``."""
    return f"{used} (of {asked})" if used != asked else str(asked)


def with_data(rows: Sequence[dict[str, Any]], report: dict[str, dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """Per-task result rows (``task`` key) plus ``K`` (few-shot runs) and ``<split>_unreadable`` from
    :func:`~mvlpt.clip.pipeline.data.data_report`; the counts ``n`` / ``<split>_n`` as integers."""
    out = []
    for r in rows:
        d = report.get(r.get("task"), {})
        extra: dict[str, Any] = {k: int(v) for k, v in r.items()
                                 if (k == "n" or k.endswith("_n")) and isinstance(v, float) and v.is_integer()}
        if d.get("shots_requested"):
            extra["K"] = k_label(d["shots"], d["shots_requested"])
        ev = d.get("splits", {}).get(split, {})
        extra[f"{split}_unreadable"] = ev.get("unreadable", 0)
        out.append({**r, **extra})
    return out


def data_markdown(report: dict[str, dict[str, Any]], heading: str = "##") -> str:
    """The ``Data`` section: per task and split, its images, those scored (``n``) and the unreadable ones."""
    rows, notes = [], []
    for task, d in report.items():
        if d.get("shots_requested") and d["shots"] != d["shots_requested"]:
            notes.append(f"{task}: trained with K={d['shots']} shots per class, fewer than the K={d['shots_requested']} "
                         "asked for (its smallest class has no more; data.if_too_few=largest)")
        for split, s in d.get("splits", {}).items():
            files = s.get("files") or []
            rows.append({"task": task, "split": split, "images": s["size"],
                         "scored (n)": s.get("scored", "—"), "unreadable": s["unreadable"],
                         "unreadable files": ", ".join(files[:5]) + (f", ... ({len(files) - 5} more)" if len(files) > 5 else "")})
    legend = ("n = images actually scored. Unreadable images of an evaluation split are skipped (not scored, not in "
              "n, never replaced); those of a training split are replaced by the next readable image. More than "
              "max_unreadable_fraction (default 1%) of a split unreadable is an error.")
    text = f"{heading} Data\n\n{legend}\n\n" + markdown_table(rows)
    if notes:
        text += "\n" + "\n".join(f"* {n}" for n in notes) + "\n"
    return text


def write_data_report(run_dir: str | Path, report: dict[str, dict[str, Any]]) -> None:
    """``data.json`` and the ``Data`` section appended to ``results.md``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DATA_FILE).write_text(json.dumps(report, indent=1))
    with (run_dir / "results.md").open("a") as f:
        f.write("\n" + data_markdown(report))


def read_data(run_dir: str | Path | None) -> dict[str, dict[str, Any]]:
    """A run's ``data.json`` (empty when missing)."""
    if not run_dir:
        return {}
    path = Path(run_dir) / DATA_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
